"""The placement stage: carrying out a reprovisioning plan on the hubs, through their connectors."""

from __future__ import annotations

import logging
from typing import Any

from devprov.allocation.policies import AllocationError
from devprov.attestation.attested import Attested
from devprov.domain.errors import HUB_CONNECTOR_FAILED
from devprov.domain.models import LinkedHub
from devprov.domain.reprovisioning import Place, Plan
from devprov.hubs.connector import ConnectorError, ConnectorSource, DeviceIdentity

log = logging.getLogger(__name__)


class Placement:
    """Puts the device's identity on its hub; reads its old twin and removes it from its old
    hub when the plan says so."""

    def __init__(self, connectors: ConnectorSource) -> None:
        self.connectors = connectors

    async def place(
        self,
        attested: Attested,
        hub: LinkedHub,
        device_id: str,
        plan: Plan,
        linked: list[LinkedHub],
        leaving: bool = True,
    ) -> dict[str, Any] | None:
        """Carry out the plan; answers the initial twin applied on the hub (None: none was).

        Not `leaving`: the device stays on its old hub until the caller calls `leave` (once
        the record names the new one, so that a crash in between leaves a device on two hubs,
        which is cleaned up, rather than on none its record names)."""
        twin = plan.twin
        if plan.carry_twin_from is not None:
            twin = await self._old_twin(linked, plan.carry_twin_from)
        await self._put_on_hub(attested, hub, device_id, twin)
        if leaving and plan.leave is not None:
            await self._remove(linked, plan.leave)
        return twin

    async def leave(self, linked: list[LinkedHub], place: Place) -> bool:
        """Remove the device from the hub it left; False if that hub failed to answer."""
        return await self._remove(linked, place)

    async def _put_on_hub(
        self, attested: Attested, hub: LinkedHub, device_id: str, twin: dict[str, Any] | None
    ) -> None:
        capabilities = attested.enrollment.capabilities
        identity = DeviceIdentity(
            hub_host_name=hub.host_name,
            device_id=device_id,
            registration_id=attested.registration_id,
            authentication=attested.hub_authentication,
            capabilities=capabilities.to_wire() if capabilities else {"iotEdge": False},
            initial_twin=twin,
        )
        try:
            connector = await self.connectors.for_hub(hub)
            await connector.upsert_device(hub, identity)
        except Exception as exc:
            _log_failure(exc, "hub connector %s failed for %s", hub.connector, device_id)
            raise AllocationError(
                400,
                HUB_CONNECTOR_FAILED,
                f"Creating device {device_id!r} on IoT hub {hub.host_name!r} failed: {exc}",
            ) from None

    async def _old_twin(self, linked: list[LinkedHub], place: Place) -> dict[str, Any]:
        """The twin a migrating device leaves behind: empty when the device or its old hub is
        not there any more; a hub that fails to answer fails the registration (400213), so a
        twin is never dropped because its hub was down for a moment."""
        hub = _linked(linked, place.hub)
        if hub is None:
            return {}
        try:
            connector = await self.connectors.for_hub(hub)
            twin = await connector.read_twin(hub, place.device_id)
        except Exception as exc:
            _log_failure(exc, "could not read the twin of %s on %s to migrate it", *_names(place))
            raise AllocationError(
                400,
                HUB_CONNECTOR_FAILED,
                f"Reading the twin of {place.device_id!r} on IoT hub {place.hub!r} to migrate it"
                f" failed: {exc}",
            ) from None
        return twin or {}

    async def _remove(self, linked: list[LinkedHub], place: Place) -> bool:
        hub = _linked(linked, place.hub)
        if hub is None:
            return True
        try:
            connector = await self.connectors.for_hub(hub)
            await connector.remove_device(hub, place.device_id)
        except Exception as exc:
            _log_failure(exc, "could not remove %s from %s after it moved", *_names(place))
            return False
        return True


def _log_failure(exc: Exception, message: str, *args: object) -> None:
    """A connector's own failure (its hub is down, refused, timed out) is one line; anything
    else is our bug, with its traceback."""
    if isinstance(exc, ConnectorError):
        log.warning(message + ": %s", *args, exc)
    else:
        log.exception(message, *args)


def _linked(linked: list[LinkedHub], name: str) -> LinkedHub | None:
    return next((hub for hub in linked if hub.host_name.lower() == name.lower()), None)


def _names(place: Place) -> tuple[str, str]:
    return place.device_id, place.hub
