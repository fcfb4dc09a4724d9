"""The hub connector interface and the device identity it is handed."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Protocol


@dataclass(frozen=True)
class DeviceIdentity:
    """What a hub needs to let a device in: its id, credentials, capabilities and initial twin.

    `authentication` follows IoT Hub's device shape, e.g.
    `{"type": "sas", "symmetricKey": {"primaryKey": ..., "secondaryKey": ...}}`.
    """

    hub_host_name: str
    device_id: str
    registration_id: str
    authentication: dict[str, Any]
    capabilities: dict[str, Any] = field(default_factory=lambda: {"iotEdge": False})
    initial_twin: dict[str, Any] | None = None


class HubConnector(Protocol):
    """Creates or updates a device identity on one kind of hub."""

    async def upsert_device(self, identity: DeviceIdentity) -> None:
        """Create the device, or update its credentials and capabilities if it exists.

        The initial twin is applied only when `identity.initial_twin` is set: the registration
        service decides when a twin is (re)applied, the connector just carries it out."""
        ...

    async def read_twin(self, hub_host_name: str, device_id: str) -> dict[str, Any] | None:
        """The device's twin on a hub, so that "reprovision and migrate" can carry it along;
        None when the device or its twin is not there."""
        ...

    async def remove_device(self, hub_host_name: str, device_id: str) -> None:
        """Remove a device from a hub it left (reprovisioning to another hub)."""
        ...
