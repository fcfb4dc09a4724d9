"""Payload schemas and routes: JSON Schema 2020-12 checks, first-match routing, substitution."""

from __future__ import annotations

from typing import Any

import pytest

from devprov.allocation import payload as payloads
from devprov.allocation.allocator import Allocation, AllocationRequest, Allocators
from devprov.allocation.builtin import built_in_allocators
from devprov.domain.errors import DpsError
from tests.registration.fakes import individual, linked

HUBS = linked("kettles.example", "toasters.example", "spare.example")
KETTLE = {"modelId": "dtmi:contoso:kettle;1", "site": {"id": 7, "name": "Lyon"}, "tags": ["a"]}


def request(payload: Any, **fields: Any) -> AllocationRequest:
    return AllocationRequest("dev-1", individual(**fields), HUBS, payload)


class Asked:
    """A custom allocator that says which hub it chose and that it was asked."""

    def __init__(self) -> None:
        self.asked = 0

    async def allocate(self, request: AllocationRequest) -> Allocation:
        self.asked += 1
        return Allocation("spare.example", {"tags": {"from": "allocator"}}, {"from": "allocator"})


ROUTES = [
    {
        "match": {
            "required": ["modelId"],
            "properties": {"modelId": {"pattern": "^dtmi:contoso:kettle;"}},
        },
        "iotHubHostName": "kettles.example",
        "initialTwin": {"tags": {"model": "{payload.modelId}", "site": "{payload.site}"}},
        "payload": {"welcome": "{registrationId} at {payload.site.name}", "n": "{payload.site.id}"},
    },
    {"match": {"required": ["modelId"]}, "iotHubHostName": "toasters.example"},
]


async def test_the_first_matching_route_answers_with_parts_of_the_payload() -> None:
    custom = Asked()
    allocators = Allocators({**built_in_allocators(), "custom": custom})
    fields = {
        "payloadRoutes": ROUTES,
        "allocationPolicy": "custom",
        "customAllocationDefinition": {"webhookUrl": "allocator://x", "apiVersion": "2021-10-01"},
    }

    kettle = await allocators.allocate(request(KETTLE, **fields))
    toaster = await allocators.allocate(request({"modelId": "dtmi:toaster;1"}, **fields))
    other = await allocators.allocate(request({"kind": "lamp"}, **fields))

    assert kettle == Allocation(
        "kettles.example",
        {"tags": {"model": "dtmi:contoso:kettle;1", "site": {"id": 7, "name": "Lyon"}}},
        {"welcome": "dev-1 at Lyon", "n": 7},
    )
    assert toaster == Allocation("toasters.example", None, None)
    assert other.hub == "spare.example"  # no route matched: the enrollment's policy decides
    assert custom.asked == 1


async def test_a_route_without_a_hub_adds_to_the_policys_choice() -> None:
    allocators = Allocators(built_in_allocators())
    route = {"match": True, "payload": {"firmware": "{payload.tags.0}-{payload.missing}"}}

    allocation = await allocators.allocate(request(KETTLE, payloadRoutes=[route]))

    assert allocation.hub in {hub.host_name for hub in HUBS}
    assert allocation.payload == {"firmware": "a-"}


def test_substitution_rules() -> None:
    template = {
        "whole": "{payload.site}",
        "missing": "{payload.nope.deeper}",
        "list": ["{payload.tags.0}", "{payload.tags.9}"],
        "text": "id={registrationId};site={payload.site.id};{not a placeholder}",
        "number": 3,
    }
    assert payloads.substitute(template, "dev-9", KETTLE) == {
        "whole": {"id": 7, "name": "Lyon"},
        "missing": None,
        "list": ["a", None],
        "text": "id=dev-9;site=7;{not a placeholder}",
        "number": 3,
    }
    assert payloads.substitute("{payload}", "d", None) is None


def test_a_payload_that_breaks_the_schema_is_refused_with_path_and_rule() -> None:
    enrollment = individual(
        payloadSchema={
            "type": "object",
            "required": ["modelId"],
            "properties": {"site": {"properties": {"id": {"type": "integer", "maximum": 5}}}},
        }
    )
    payloads.check_payload(enrollment, {"modelId": "m", "site": {"id": 3}})

    with pytest.raises(DpsError) as too_big:
        payloads.check_payload(enrollment, KETTLE)
    with pytest.raises(DpsError) as none_sent:
        payloads.check_payload(enrollment, None)

    assert too_big.value.status == 400
    assert too_big.value.error_code == 400011
    assert "at payload.site.id" in too_big.value.message
    assert "'maximum'" in too_big.value.message
    assert "'type'" in none_sent.value.message


def test_no_schema_accepts_anything() -> None:
    payloads.check_payload(individual(), {"anything": [1, None]})


@pytest.mark.parametrize(
    "schema", [{"type": "no-such-type"}, {"minimum": "three"}, ["not", "a", "schema"]]
)
def test_an_invalid_schema_is_refused_when_written(schema: Any) -> None:
    with pytest.raises(DpsError) as refused:
        payloads.check_schema(schema, "payloadSchema")
    assert refused.value.error_code == 400004
    assert "payloadSchema" in refused.value.message


def test_validators_are_compiled_once_per_schema() -> None:
    cache = payloads._Compiled(size=2)
    schema = {"type": "object"}
    first = cache.validator(schema)
    assert cache.validator(schema) is first
    assert cache.validator({"type": "object"}) is first  # same content, another object
    cache.validator({"type": "string"})
    cache.validator({"type": "number"})
    assert cache.validator({"type": "object"}) is not first  # evicted: the cache is bounded
