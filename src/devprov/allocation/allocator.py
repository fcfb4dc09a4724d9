"""The allocation seam: what an allocator is asked, what it answers, and allocators by policy."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from devprov.allocation.payload import matching_route, route_answer
from devprov.domain.models import EnrollmentGroup, IndividualEnrollment, LinkedHub
from devprov.domain.reprovisioning import Place

DEFAULT_POLICY = "hashed"


@dataclass(frozen=True)
class AllocationRequest:
    """One device to allocate: who it is, what it sent, and the hubs it may go to.

    `runtime_attestation` is the attestation part of DPS's deviceRuntimeContext (what a webhook
    is told about how the device proved itself); `current` is where the device is now."""

    registration_id: str
    enrollment: IndividualEnrollment | EnrollmentGroup
    candidates: Sequence[LinkedHub]
    payload: Any = None
    runtime_attestation: Mapping[str, Any] = field(default_factory=dict)
    current: Place | None = None


@dataclass(frozen=True)
class Allocation:
    """The chosen hub (one of the candidates), and the twin and payload an allocator may add."""

    hub: str
    initial_twin: dict[str, Any] | None = None
    payload: Any = None


class Allocator(Protocol):
    """Picks a hub for a device; refusals are `AllocationError`s with DPS's codes."""

    async def allocate(self, request: AllocationRequest) -> Allocation: ...


class Allocators:
    """The allocator of each allocation policy (`hashed`, `geoLatency`, `static`, `custom`...),
    after the enrollment's payload routes: the first route the payload matches answers instead."""

    def __init__(self, by_policy: Mapping[str, Allocator]) -> None:
        self._by_policy = dict(by_policy)

    def register(self, policy: str, allocator: Allocator) -> None:
        self._by_policy[policy] = allocator

    def policy_of(self, enrollment: IndividualEnrollment | EnrollmentGroup) -> str:
        """The enrollment's policy; custom without a definition, or none, is hashed (as DPS)."""
        policy = enrollment.allocation_policy or DEFAULT_POLICY
        if policy == "custom" and enrollment.custom_allocation_definition is None:
            return DEFAULT_POLICY
        return policy

    async def allocate(self, request: AllocationRequest) -> Allocation:
        routes = request.enrollment.payload_routes
        route = matching_route(routes, request.payload) if routes else None
        if route is not None:
            hub, twin, payload = route_answer(route, request.registration_id, request.payload)
            if hub is not None:
                return Allocation(hub, twin, payload)
            # A route without a hub adds its twin and payload to the policy's choice.
            chosen = await self._policy_allocate(request)
            return Allocation(
                chosen.hub,
                twin if twin is not None else chosen.initial_twin,
                payload if route.payload is not None else chosen.payload,
            )
        return await self._policy_allocate(request)

    async def _policy_allocate(self, request: AllocationRequest) -> Allocation:
        allocator = self._by_policy.get(self.policy_of(request.enrollment))
        if allocator is None:
            allocator = self._by_policy[DEFAULT_POLICY]
        return await allocator.allocate(request)
