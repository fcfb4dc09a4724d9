"""The built-in `registry` connector: keeps hub device identities in devprov's own store."""

from __future__ import annotations

from devprov.domain.clock import new_etag, now_timestamp
from devprov.hubs.connector import DeviceIdentity
from devprov.store.database import Kind, Put, Store


def hub_device_key(hub_host_name: str, device_id: str) -> str:
    return f"{hub_host_name.lower()}/{device_id.lower()}"


class RegistryConnector:
    """Stores each identity as a document readable through `GET /linkedHubs/{hub}/devices`."""

    def __init__(self, store: Store) -> None:
        self.store = store

    async def upsert_device(self, identity: DeviceIdentity) -> None:
        key = hub_device_key(identity.hub_host_name, identity.device_id)
        existing = await self.store.get(Kind.HUB_DEVICE, key)
        document = {
            "deviceId": identity.device_id,
            "hubHostName": identity.hub_host_name,
            "registrationId": identity.registration_id,
            "authentication": identity.authentication,
            "capabilities": identity.capabilities,
            "twin": identity.initial_twin
            if identity.initial_twin is not None or existing is None
            else existing.document.get("twin"),
            "lastUpdatedDateTimeUtc": now_timestamp(),
        }
        await self.store.write(
            [
                Put(
                    Kind.HUB_DEVICE,
                    key,
                    new_etag(),
                    document,
                    {"hub_key": identity.hub_host_name.lower()},
                )
            ]
        )

    async def remove_device(self, hub_host_name: str, device_id: str) -> None:
        await self.store.delete(Kind.HUB_DEVICE, hub_device_key(hub_host_name, device_id))
