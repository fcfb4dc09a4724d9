"""What the built-in hub needs from the rest of devprov: linked hubs and CAs, a message log, and
the devices connected to this process."""

from __future__ import annotations

from typing import Any, Protocol

from devprov.domain.cas import KnownCa
from devprov.domain.models import LinkedHub
from devprov.domain.records import Revisions

Document = dict[str, Any]


class HubDirectory(Protocol):
    """The linked hubs and verified CAs, as cached for registrations."""

    async def refresh(self, revisions: Revisions | None = None) -> None: ...

    async def linked_hubs(self) -> list[LinkedHub]: ...

    async def known_cas(self) -> dict[str, KnownCa]: ...


class MessageLog(Protocol):
    """Where device-to-cloud messages are kept, per hub, bounded: a full log drops its oldest."""

    def append(self, hub: str, device_id: str, message: Document) -> None:
        """Take a message; it is written soon after, with others (this never waits)."""
        ...


class DeviceLink(Protocol):
    """A device connected to this process, as the hub's service side reaches it."""

    def push_desired(self, delta: Document) -> None:
        """Send a desired-properties patch, if the device subscribed to them."""
        ...

    async def invoke(self, method: str, payload: Any, wait_seconds: float) -> tuple[int, Any]:
        """Call a direct method and wait for the device's answer: (status, payload)."""
        ...

    def disconnect(self, reason: str) -> None: ...
