"""The allocation stage: the hubs a device may go to, and the one its enrollment's policy picks."""

from __future__ import annotations

from typing import Any

from devprov.allocation import policies
from devprov.allocation.allocator import Allocation, AllocationRequest, Allocators
from devprov.allocation.policies import AllocationError
from devprov.attestation.attested import Attested
from devprov.domain.errors import HUB_NOT_LINKED
from devprov.domain.models import DeviceRegistrationState, EnrollmentFields, LinkedHub
from devprov.domain.reprovisioning import current_place, stays_put


def candidate_hubs(
    enrollment: EnrollmentFields,
    linked: list[LinkedHub],
    previous: DeviceRegistrationState | None,
) -> list[LinkedHub]:
    """The enrollment's hubs, or only the device's current one while it must stay put (and
    that hub is still linked)."""
    place = current_place(previous)
    if place is not None and stays_put(previous, enrollment.effective_reprovision_policy):
        kept = [hub for hub in linked if hub.host_name.lower() == place.hub.lower()]
        if kept:
            return kept
    return policies.candidate_hubs(enrollment, linked)


class AllocationStage:
    """Asks the allocator of the enrollment's policy, and holds it to the candidate hubs."""

    def __init__(self, allocators: Allocators) -> None:
        self.allocators = allocators

    async def allocate(
        self,
        attested: Attested,
        payload: Any,
        linked: list[LinkedHub],
        previous: DeviceRegistrationState | None,
    ) -> tuple[LinkedHub, Allocation]:
        candidates = candidate_hubs(attested.enrollment, linked, previous)
        request = AllocationRequest(
            registration_id=attested.registration_id,
            enrollment=attested.enrollment,
            candidates=candidates,
            payload=payload,
            runtime_attestation=attested.runtime_attestation,
            current=current_place(previous),
        )
        allocation = await self.allocators.allocate(request)
        chosen = allocation.hub.lower()
        hub = next((hub for hub in candidates if hub.host_name.lower() == chosen), None)
        if hub is None:
            raise AllocationError(
                400,
                HUB_NOT_LINKED,
                f"Allocation chose IoT hub {allocation.hub!r}, which is not one of the hubs"
                f" offered: {[hub.host_name for hub in candidates]}.",
            )
        return hub, allocation
