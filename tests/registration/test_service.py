"""The registration service over in-memory ports: fast path, polling, records, observers."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from devprov.allocation.allocator import Allocation, AllocationRequest, Allocators
from devprov.allocation.builtin import built_in_allocators
from devprov.domain.errors import DpsError
from devprov.protocol.dps import RegisterRequest
from devprov.registration.allocate import AllocationStage
from devprov.registration.attest import Attestation, DeviceProof
from devprov.registration.claim import Claiming
from devprov.registration.observe import Observers, RegistrationEvent, Request, handling
from devprov.registration.place import Placement
from devprov.registration.provision import Provisioning
from devprov.registration.service import RegistrationService, RegistrationSettings
from devprov.registration.settle import Settling
from tests.helpers import device_token
from tests.registration.fakes import (
    KEY,
    MemoryChallenges,
    MemoryClaims,
    MemoryDirectory,
    MemoryHub,
    MemoryOperations,
    MemoryRecords,
    OneConnector,
    individual,
    linked,
)

SCOPE = "0ne00000001"


def proof(registration_id: str = "dev-1", key: str = KEY) -> DeviceProof:
    return DeviceProof(device_token(f"{SCOPE}/registrations/{registration_id}", key))


class Gate:
    """An allocator that waits for the test before it answers."""

    def __init__(self) -> None:
        self.open = asyncio.Event()

    async def allocate(self, request: AllocationRequest) -> Allocation:
        await self.open.wait()
        return Allocation(request.candidates[0].host_name, None, {"late": True})


class Service:
    def __init__(self, *, fast_path_seconds: float = 1.5, **enrollment: Any) -> None:
        self.directory = MemoryDirectory(
            individuals={"dev-1": individual(**enrollment)}, hubs=linked("hub.example")
        )
        self.claims = MemoryClaims()
        self.records = MemoryRecords(claims=self.claims)
        self.claims.records = self.records
        self.operations = MemoryOperations()
        self.hub = MemoryHub()
        self.events: list[RegistrationEvent] = []
        self.gate = Gate()
        observers = Observers([self.events.append])
        allocators = Allocators({**built_in_allocators(), "static": self.gate})
        connector = OneConnector(self.hub)
        claiming = Claiming(self.claims, deadline_seconds=60)
        settling = Settling(self.directory, connector, self.records, self.operations, claiming)
        self.service = RegistrationService(
            RegistrationSettings(SCOPE, fast_path_seconds=fast_path_seconds),
            Attestation(SCOPE, self.directory, MemoryChallenges()),
            Provisioning(
                self.directory,
                AllocationStage(allocators),
                Placement(connector),
                self.records,
                observers,
                claiming,
                settling,
                60,
            ),
            self.records,
            self.operations,
            observers,
        )

    async def register(self, registration_id: str = "dev-1", key: str = KEY) -> Any:
        return await self.service.register(
            SCOPE,
            registration_id,
            proof(registration_id, key),
            RegisterRequest(None, {"p": 1}, None),
        )


async def test_a_quick_registration_is_answered_assigned_and_recorded() -> None:
    service = Service()
    result = await service.register()
    assert not result.pending
    assert result.body["status"] == "assigned"
    assert result.body["registrationState"]["assignedHub"] == "hub.example"
    assert await service.records.read("dev-1") == result.body["registrationState"]
    assert service.operations.statuses == {}  # nobody will poll it
    assert [event.kind for event in service.events] == [
        "attested",
        "allocated",
        "placed",
        "assigned",
    ]
    assert all(event.seconds >= 0 for event in service.events)


async def test_a_slow_registration_is_polled_until_its_operation_is_done() -> None:
    service = Service(fast_path_seconds=0.01, allocationPolicy="static", iotHubs=["hub.example"])
    result = await service.register()
    assert result.pending and result.retry_after == 1
    assert service.service.in_flight == 1
    operation_id = result.body["operationId"]
    attested = await service.service.attest(SCOPE, "dev-1", proof())
    assert (await service.service.poll(attested, operation_id)).pending

    service.gate.open.set()
    for _ in range(100):
        polled = await service.service.poll(attested, operation_id)
        if not polled.pending:
            break
        await asyncio.sleep(0.01)
    assert polled.body["status"] == "assigned"
    assert polled.body["registrationState"]["payload"] == {"late": True}
    assert service.service.in_flight == 0


async def test_a_refusal_is_observed_and_leaves_nothing_behind() -> None:
    service = Service()
    with pytest.raises(DpsError):
        await service.register(key="d3Jvbmcta2V5LXdyb25nLWtleS13cm9uZy1rZXkhIQ==")
    assert [event.kind for event in service.events] == ["refused"]
    assert service.events[0].error is not None and service.events[0].error.status == 401
    assert service.records.records == {} and service.hub.devices == {}


async def test_a_failure_after_attestation_is_recorded_whole() -> None:
    service = Service()
    service.hub.fail_with = RuntimeError("down")
    result = await service.register()
    state = result.body["registrationState"]
    assert (state["status"], state["errorCode"]) == ("failed", 400213)
    assert await service.records.read("dev-1") == state
    assert service.events[-1].kind == "failed"
    assert service.events[-1].error is not None and service.events[-1].error.error_code == 400213


async def test_an_observer_that_raises_does_not_fail_the_registration() -> None:
    service = Service()

    def broken(event: RegistrationEvent) -> None:
        raise RuntimeError("observer bug")

    service.service.observers.add(broken)
    assert (await service.register()).body["status"] == "assigned"


async def test_a_body_the_enrollment_refuses_is_refused_before_anything_is_recorded() -> None:
    service = Service(payloadSchema={"type": "object", "required": ["modelId"]})

    with pytest.raises(DpsError) as refused:
        await service.register()  # sends {"p": 1}

    assert refused.value.error_code == 400011
    assert await service.records.read("dev-1") is None
    assert service.hub.devices == {}
    assert [event.kind for event in service.events] == ["attested", "refused"]
    assert service.events[-1].error is refused.value


async def test_the_outcome_event_tells_what_the_device_sent_and_got() -> None:
    service = Service(initialTwin={"tags": {"line": 1}})
    with handling(Request("mqtt", "tracking-1", 0.0)):
        result = await service.register()
    outcome = service.events[-1]
    assert outcome.kind == "assigned"
    assert outcome.payload == {"p": 1}
    assert outcome.record == result.body["registrationState"]
    assert outcome.initial_twin == {"tags": {"line": 1}}
    assert outcome.stages is not None
    assert set(outcome.stages) == {"allocation", "placement", "store"}
    assert all(event.request == Request("mqtt", "tracking-1", 0.0) for event in service.events)


async def test_a_failed_outcome_still_times_the_stage_that_failed() -> None:
    service = Service()
    service.hub.fail_with = RuntimeError("down")
    await service.register()
    outcome = service.events[-1]
    assert outcome.stages is not None and "placement" in outcome.stages
    assert outcome.request is None  # no transport said which request this was
