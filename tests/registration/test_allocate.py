"""The allocation stage: candidate hubs, the allocator of each policy, and its limits."""

from __future__ import annotations

from typing import Any

import pytest

from devprov.allocation.allocator import Allocation, AllocationRequest, Allocators
from devprov.allocation.builtin import built_in_allocators
from devprov.allocation.policies import AllocationError
from devprov.attestation.attested import Attested
from devprov.domain.models import DeviceRegistrationState
from devprov.registration.allocate import AllocationStage, candidate_hubs
from tests.registration.fakes import individual, linked

HUBS = linked("a.example", "b.example", "c.example")


class Recording:
    """An allocator that answers a fixed hub and remembers what it was asked."""

    def __init__(self, hub: str) -> None:
        self.hub = hub
        self.requests: list[AllocationRequest] = []

    async def allocate(self, request: AllocationRequest) -> Allocation:
        self.requests.append(request)
        return Allocation(self.hub, {"tags": {"by": "test"}}, {"back": True})


def attested(**fields: Any) -> Attested:
    return Attested("dev-1", individual(**fields), {"type": "sas"}, {"symmetricKey": {}})


def on(hub: str) -> DeviceRegistrationState:
    return DeviceRegistrationState(
        registration_id="dev-1", assigned_hub=hub, device_id="dev-1", status="assigned"
    )


def test_candidates_are_the_enrollments_hubs() -> None:
    enrollment = individual(allocationPolicy="hashed", iotHubs=["b.example"])
    assert [h.host_name for h in candidate_hubs(enrollment, HUBS, None)] == ["b.example"]


def test_a_device_that_must_stay_put_is_offered_only_its_hub() -> None:
    never = individual(reprovisionPolicy={"updateHubAssignment": False})
    assert [h.host_name for h in candidate_hubs(never, HUBS, on("c.example"))] == ["c.example"]
    # ...unless that hub was unlinked meanwhile: then the policy decides again.
    assert len(candidate_hubs(never, HUBS, on("gone.example"))) == 3


async def test_the_policys_allocator_is_asked_with_what_the_device_sent() -> None:
    custom = Recording("B.example")
    stage = AllocationStage(Allocators({**built_in_allocators(), "custom": custom}))
    enrollment_fields = {
        "allocationPolicy": "custom",
        "customAllocationDefinition": {"webhookUrl": "https://x/", "apiVersion": "2021-10-01"},
    }
    hub, allocation = await stage.allocate(
        attested(**enrollment_fields), {"modelId": "m"}, HUBS, on("a.example")
    )
    assert hub.host_name == "b.example"
    assert allocation.payload == {"back": True}
    (request,) = custom.requests
    assert request.payload == {"modelId": "m"}
    assert request.current is not None and request.current.hub == "a.example"
    assert request.runtime_attestation == {"symmetricKey": {}}


async def test_custom_without_a_definition_is_hashed_as_dps_does() -> None:
    custom = Recording("a.example")
    allocators = Allocators({**built_in_allocators(), "custom": custom})
    assert allocators.policy_of(individual(allocationPolicy="custom")) == "hashed"
    hub, _ = await AllocationStage(allocators).allocate(attested(), None, HUBS, None)
    assert hub.host_name in {"a.example", "b.example", "c.example"}
    assert custom.requests == []


async def test_an_allocator_may_not_choose_a_hub_it_was_not_offered() -> None:
    stage = AllocationStage(Allocators({"hashed": Recording("elsewhere.example")}))
    with pytest.raises(AllocationError) as refused:
        await stage.allocate(attested(), None, HUBS, None)
    assert refused.value.error_code == 400209
    assert "elsewhere.example" in refused.value.message


async def test_a_policy_can_be_registered() -> None:
    allocators = Allocators(built_in_allocators())
    allocators.register("static", Recording("c.example"))
    enrollment = individual(allocationPolicy="static", iotHubs=["c.example"])
    hub, _ = await AllocationStage(allocators).allocate(
        Attested("dev-1", enrollment, {}), None, HUBS, None
    )
    assert hub.host_name == "c.example"
