"""The built-in allocation policies (hashed, geoLatency, static): pick a hub without any I/O."""

from __future__ import annotations

import hashlib
import math
from collections.abc import Sequence

from devprov.domain.errors import HUB_NOT_LINKED, NO_HUB, DpsError
from devprov.domain.models import EnrollmentFields, LinkedHub


class AllocationError(DpsError):
    """Allocation could not pick a hub; the registration ends `failed` with this code."""


def candidate_hubs(enrollment: EnrollmentFields, linked: Sequence[LinkedHub]) -> list[LinkedHub]:
    """The hubs an enrollment may be assigned to.

    An enrollment that lists hubs (iotHubs, or the legacy iotHubHostName) may use exactly those, and
    each must still be linked. One that lists none follows the linked hubs as they change, minus
    those whose applyAllocationPolicy is false.
    """
    by_name = {hub.host_name.lower(): hub for hub in linked}
    wanted = enrollment.iot_hubs or (
        [enrollment.iot_hub_host_name] if enrollment.iot_hub_host_name else []
    )
    if wanted:
        missing = [name for name in wanted if name.lower() not in by_name]
        if missing:
            raise AllocationError(
                400,
                HUB_NOT_LINKED,
                f"The enrollment names IoT hubs that are not linked: {missing}.",
            )
        return [by_name[name.lower()] for name in wanted]
    pool = [hub for hub in linked if hub.apply_allocation_policy]
    if not pool:
        raise AllocationError(400, NO_HUB, "No linked IoT hub is available for allocation.")
    return pool


def hashed(registration_id: str, hubs: Sequence[LinkedHub]) -> LinkedHub:
    """Weighted rendezvous hashing: deterministic per registration id, spread by allocationWeight.

    Each hub scores weight / -ln(u), u a uniform number drawn from a hash of (id, hub); the highest
    score wins. A hub with twice the weight wins twice as often, and adding or removing a hub only
    moves the devices that hub wins or loses.
    """
    if not hubs:
        raise AllocationError(400, NO_HUB, "No linked IoT hub is available for allocation.")
    key = registration_id.lower().encode()

    def score(hub: LinkedHub) -> float:
        digest = hashlib.sha256(key + b"\0" + hub.host_name.lower().encode()).digest()
        uniform = (int.from_bytes(digest[:8], "big") + 1) / (2**64 + 1)
        return hub.allocation_weight / -math.log(uniform)

    return max(hubs, key=score)


def static(hubs: Sequence[LinkedHub]) -> LinkedHub:
    if len(hubs) != 1:
        raise AllocationError(
            400, NO_HUB, f"A static allocation needs exactly one IoT hub; {len(hubs)} are possible."
        )
    return hubs[0]


def geo_latency(registration_id: str, hubs: Sequence[LinkedHub]) -> LinkedHub:
    """devprov measures no latency: every linked hub is treated as equally near, ties hashed."""
    return hashed(registration_id, hubs)
