"""The built-in allocation policies as allocators: hashed, geoLatency and static."""

from __future__ import annotations

from collections.abc import Callable, Sequence

from devprov.allocation import policies
from devprov.allocation.allocator import Allocation, AllocationRequest, Allocator
from devprov.domain.models import LinkedHub


class PolicyAllocator:
    """An allocator that picks a hub with a pure function of the registration id and hubs."""

    def __init__(self, choose: Callable[[str, Sequence[LinkedHub]], LinkedHub]) -> None:
        self.choose = choose

    async def allocate(self, request: AllocationRequest) -> Allocation:
        return Allocation(self.choose(request.registration_id, request.candidates).host_name)


def built_in_allocators() -> dict[str, Allocator]:
    return {
        "hashed": PolicyAllocator(policies.hashed),
        "geoLatency": PolicyAllocator(policies.geo_latency),
        "static": PolicyAllocator(lambda _registration_id, hubs: policies.static(hubs)),
    }
