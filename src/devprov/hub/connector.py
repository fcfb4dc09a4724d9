"""The `builtin` hub connector: DPS puts the identities it provisions on devprov's own hub.

It writes what Azure's DPS writes to an IoT hub (iothub-registry-rest.md §4): the device
identity with its credentials and capabilities, the initial twin when DPS applies one, the
twin carried along on "reprovision and migrate", and removes the device from a hub it left.
A linked `builtin` hub's connection string is its own `iothubowner` connection string, made
when the hub is linked; service clients use it to reach the hub's REST API.
"""

from __future__ import annotations

import ipaddress
import re
from typing import Any

from devprov.domain.clock import now_timestamp
from devprov.domain.errors import bad_request
from devprov.domain.hub_identities import dps_twin, new_device, updated_device
from devprov.domain.keys import validate_key
from devprov.domain.models import LinkedHub
from devprov.hub.auth import new_connection_string, parse_connection_string
from devprov.hub.devices import HubDevices
from devprov.hub.presence import Presence
from devprov.hub.service import KIND
from devprov.hubs.connector import DeviceIdentity, Finding

__all__ = ["KIND", "BuiltinConnector", "prepare"]
_DNS_NAME = re.compile(
    r"(?=.{1,253}$)([a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?)(\.[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?)*",
    re.I,
)


def _certifiable(name: str) -> bool:
    """Whether a name can go into the server certificate: an IP address or an ASCII DNS name."""
    try:
        ipaddress.ip_address(name)
    except ValueError:
        return _DNS_NAME.fullmatch(name) is not None
    return True


def prepare(hub: LinkedHub) -> LinkedHub:
    """A built-in hub gets an `iothubowner` connection string when it has none; one given must
    name the hub itself and carry a usable key. Its name goes into devprov's server certificate,
    so it must be a DNS name (or an IP address)."""
    if not _certifiable(hub.host_name):
        raise bad_request(
            f"hostName: a built-in hub's name goes into the server certificate: use letters,"
            f" digits, '-' and '.' (or an IP address), not {hub.host_name!r}."
        )
    if not hub.connection_string:
        return hub.model_copy(update={"connection_string": new_connection_string(hub.host_name)})
    fields = parse_connection_string(hub.connection_string)
    if fields.get("HostName", "").lower() != hub.host_name.lower():
        raise bad_request(
            f"connectionString: a built-in hub's HostName must be {hub.host_name!r} itself."
        )
    if not fields.get("SharedAccessKeyName"):
        raise bad_request("connectionString: SharedAccessKeyName is missing.")
    validate_key(fields.get("SharedAccessKey", ""), "connectionString's SharedAccessKey")
    return hub


class BuiltinConnector:
    """Puts DPS's device identities in the built-in hub's registry."""

    def __init__(self, devices: HubDevices, presence: Presence) -> None:
        self.devices = devices
        self.presence = presence

    async def start(self) -> None:
        return None

    async def close(self) -> None:
        return None

    async def upsert_device(self, hub: LinkedHub, identity: DeviceIdentity) -> None:
        """Create or update the identity.

        When DPS applies an initial twin (every first assignment, and "reprovision and reset")
        the identity is written afresh, enabled, with that twin, without reading what was
        there: the write joins the store's batch, so a first registration costs what it cost
        before the hub existed. Otherwise the twin the device has is kept."""
        now = now_timestamp()
        if identity.initial_twin is not None:
            device = new_device(
                identity.device_id,
                identity.authentication,
                identity.capabilities,
                now,
                initial_twin=identity.initial_twin,
                registration_id=identity.registration_id,
            )
            await self.devices.put(hub.host_name, device)
            return

        def change(current: dict[str, Any] | None) -> dict[str, Any]:
            if current is None:
                return new_device(
                    identity.device_id,
                    identity.authentication,
                    identity.capabilities,
                    now,
                    registration_id=identity.registration_id,
                )
            device = updated_device(current, identity.authentication, identity.capabilities, now)
            device["registrationId"] = identity.registration_id
            return device

        await self.devices.change(hub.host_name, identity.device_id, change)

    async def read_twin(self, hub: LinkedHub, device_id: str) -> dict[str, Any] | None:
        device = await self.devices.get(hub.host_name, device_id)
        return dps_twin(device) if device else None

    async def check(self, hub: LinkedHub) -> list[Finding]:
        return [Finding("built-in hub", True, f"{hub.host_name} is served by devprov itself")]

    async def remove_device(self, hub: LinkedHub, device_id: str) -> None:
        if await self.devices.get(hub.host_name, device_id) is not None:
            await self.devices.delete(hub.host_name, device_id)
        self.presence.disconnect(hub.host_name, device_id, "the device moved to another hub")
