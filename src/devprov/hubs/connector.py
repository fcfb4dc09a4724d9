"""The hub connector interface: a device identity, a connector's calls and lifecycle, its faults."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Protocol

from devprov.domain.models import LinkedHub


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


class ConnectorError(Exception):
    """A hub connector could not do what it was asked: the hub is down, refused or did not
    answer in time. The message names the hub and the cause and is shown to the device (in
    the registration's 400213) and logged, so it never carries a secret: a connection string
    is shown as its host and key name only."""


@dataclass(frozen=True)
class Finding:
    """One thing `devprov hub check` tried on a hub: what, whether it worked, and what was seen
    (when it did not, what to do about it)."""

    what: str
    ok: bool
    detail: str


class HubConnector(Protocol):
    """Creates, reads and removes device identities on the hubs of one kind.

    A connector is built from a linked hub's settings (see factory.py), started before its
    first call and closed when devprov stops or the hub's settings change. Every call names
    the linked hub it is for."""

    async def start(self) -> None: ...

    async def close(self) -> None: ...

    async def upsert_device(self, hub: LinkedHub, identity: DeviceIdentity) -> None:
        """Create the device, or update its credentials and capabilities if it exists.

        The initial twin is applied only when `identity.initial_twin` is set: the registration
        service decides when a twin is (re)applied, the connector just carries it out."""
        ...

    async def read_twin(self, hub: LinkedHub, device_id: str) -> dict[str, Any] | None:
        """The device's twin, so that "reprovision and migrate" can carry it along; None when
        the device or its twin is not there."""
        ...

    async def remove_device(self, hub: LinkedHub, device_id: str) -> None:
        """Remove a device from a hub it left (reprovisioning to another hub); a device that
        is not there is no error."""
        ...

    async def check(self, hub: LinkedHub) -> list[Finding]:
        """Whether the hub can be reached and lets the connector do its work, without changing
        anything a device relies on (`devprov hub check`)."""
        ...


class ConnectorSource(Protocol):
    """Hands out the running connector of a linked hub."""

    async def for_hub(self, hub: LinkedHub) -> HubConnector: ...
