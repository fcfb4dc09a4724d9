"""The built-in `registry` connector: keeps hub device identities in devprov's own store."""

from __future__ import annotations

from typing import Any

from devprov.domain.clock import new_etag, now_timestamp
from devprov.domain.errors import REGISTRATION_NOT_FOUND, not_found
from devprov.domain.models import LinkedHub
from devprov.domain.records import Kind, Put, RecordStore, StoredDocument
from devprov.hubs.connector import DeviceIdentity

KIND = "registry"


def hub_device_key(hub_host_name: str, device_id: str) -> str:
    return f"{hub_host_name.lower()}/{device_id.lower()}"


class RegistryConnector:
    """Stores each identity as a document readable through `GET /linkedHubs/{hub}/devices`."""

    def __init__(self, store: RecordStore) -> None:
        self.store = store

    async def start(self) -> None:
        return None

    async def close(self) -> None:
        return None

    async def upsert_device(self, hub: LinkedHub, identity: DeviceIdentity) -> None:
        key = hub_device_key(hub.host_name, identity.device_id)

        def record(twin: dict[str, Any] | None) -> Put:
            document = {
                "deviceId": identity.device_id,
                "hubHostName": hub.host_name,
                "registrationId": identity.registration_id,
                "authentication": identity.authentication,
                "capabilities": identity.capabilities,
                "twin": twin,
                "lastUpdatedDateTimeUtc": now_timestamp(),
            }
            columns = {"hub_key": hub.host_name.lower()}
            return Put(Kind.HUB_DEVICE, key, new_etag(), document, columns)

        if identity.initial_twin is not None:
            await self.store.write([record(identity.initial_twin)])  # merged with its batch
            return

        def keep_twin(existing: StoredDocument | None) -> Put:
            """A twin is only (re)set when asked: keep the one the device has."""
            return record(existing.document.get("twin") if existing else None)

        await self.store.update(Kind.HUB_DEVICE, key, keep_twin)

    async def read_twin(self, hub: LinkedHub, device_id: str) -> dict[str, Any] | None:
        stored = await self.store.get(Kind.HUB_DEVICE, hub_device_key(hub.host_name, device_id))
        twin = stored.document.get("twin") if stored else None
        return twin if isinstance(twin, dict) else None

    async def remove_device(self, hub: LinkedHub, device_id: str) -> None:
        await self.store.delete(Kind.HUB_DEVICE, hub_device_key(hub.host_name, device_id))

    async def devices(self, hub_host_name: str) -> list[dict[str, Any]]:
        rows = await self.store.page(Kind.HUB_DEVICE, where={"hub_key": hub_host_name.lower()})
        return [row.document for row in rows]

    async def device(self, hub_host_name: str, device_id: str) -> dict[str, Any]:
        stored = await self.store.get(Kind.HUB_DEVICE, hub_device_key(hub_host_name, device_id))
        if stored is None:
            raise not_found(
                f"Device {device_id!r} is not on IoT hub {hub_host_name!r}.", REGISTRATION_NOT_FOUND
            )
        return stored.document
