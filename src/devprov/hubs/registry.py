"""The built-in `registry` connector: keeps hub device identities in devprov's own store."""

from __future__ import annotations

from typing import Any

from devprov.domain.clock import new_etag, now_timestamp
from devprov.hubs.connector import DeviceIdentity
from devprov.store.connections import DbConnection
from devprov.store.database import Kind, Put, Store


def hub_device_key(hub_host_name: str, device_id: str) -> str:
    return f"{hub_host_name.lower()}/{device_id.lower()}"


class RegistryConnector:
    """Stores each identity as a document readable through `GET /linkedHubs/{hub}/devices`."""

    def __init__(self, store: Store) -> None:
        self.store = store

    async def upsert_device(self, identity: DeviceIdentity) -> None:
        key = hub_device_key(identity.hub_host_name, identity.device_id)

        def record(twin: dict[str, Any] | None) -> Put:
            document = {
                "deviceId": identity.device_id,
                "hubHostName": identity.hub_host_name,
                "registrationId": identity.registration_id,
                "authentication": identity.authentication,
                "capabilities": identity.capabilities,
                "twin": twin,
                "lastUpdatedDateTimeUtc": now_timestamp(),
            }
            columns = {"hub_key": identity.hub_host_name.lower()}
            return Put(Kind.HUB_DEVICE, key, new_etag(), document, columns)

        if identity.initial_twin is not None:
            await self.store.write([record(identity.initial_twin)])  # merged with its batch
            return

        async def keep_twin(connection: DbConnection) -> None:
            """A twin is only (re)set when asked: keep the one the device has."""
            existing = await self.store.fetch(connection, Kind.HUB_DEVICE, key)
            await self.store.upsert(
                connection, record(existing.document.get("twin") if existing else None)
            )

        await self.store.run(keep_twin)

    async def read_twin(self, hub_host_name: str, device_id: str) -> dict[str, Any] | None:
        stored = await self.store.get(Kind.HUB_DEVICE, hub_device_key(hub_host_name, device_id))
        twin = stored.document.get("twin") if stored else None
        return twin if isinstance(twin, dict) else None

    async def remove_device(self, hub_host_name: str, device_id: str) -> None:
        await self.store.delete(Kind.HUB_DEVICE, hub_device_key(hub_host_name, device_id))
