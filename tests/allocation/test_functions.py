"""In-process allocators: configured functions called with the webhook's body, under its rules."""

from __future__ import annotations

from typing import Any

import pytest

from devprov.allocation.functions import (
    InProcessAllocators,
    load_function,
    parse_allocator_specs,
)
from devprov.allocation.policies import AllocationError
from devprov.allocation.webhook import allocation_request, check_answer
from tests.allocation import sample_allocators

MODULE = "tests.allocation.sample_allocators"


def body(payload: Any = None) -> dict[str, Any]:
    context: dict[str, Any] = {"registrationId": "kettle-7", "symmetricKey": {}}
    if payload is not None:
        context["payload"] = payload
    return allocation_request(
        "enrollmentGroup",
        {"enrollmentGroupId": "kettles", "attestation": {"type": "symmetricKey"}},
        context,
        ["kettles.example", "spare.example"],
    )


def allocators(timeout: float = 5.0) -> InProcessAllocators:
    names = {name: f"{MODULE}:{name}" for name in ("by_model", "first_hub", "broken", "slow")}
    names["NotJson"] = f"{MODULE}:not_json"
    return InProcessAllocators(parse_allocator_specs(names), timeout)


async def test_a_plain_function_gets_the_webhook_body_and_answers_like_a_webhook() -> None:
    sent = body({"modelId": "dtmi:contoso:kettle;1"})

    answer = await allocators().call("by_model", sent)

    assert sample_allocators.CALLS[-1] == sent
    checked = check_answer(answer, sent["linkedHubs"])
    assert checked.iot_hub_host_name == "kettles.example"
    assert checked.initial_twin == {"tags": {"model": "dtmi:contoso:kettle;1"}}
    assert checked.payload == {"chosenBy": "by_model", "registrationId": "kettle-7"}


async def test_an_async_function_and_names_without_case() -> None:
    answer = await allocators().call("FIRST_HUB", body())
    assert answer == {"iotHubHostName": "kettles.example", "payload": {"async": True}}


@pytest.mark.parametrize(
    ("name", "code", "words"),
    [
        ("broken", 400207, "raised ValueError: no hub for you"),
        ("notjson", 400212, "not JSON"),
        ("nobody", 400211, "--allocator nobody=package.module:function"),
    ],
)
async def test_failures_carry_the_webhooks_codes(name: str, code: int, words: str) -> None:
    with pytest.raises(AllocationError) as caught:
        await allocators().call(name, body())
    assert caught.value.error_code == code
    assert words in caught.value.message


async def test_a_slow_function_times_out_like_a_webhook() -> None:
    with pytest.raises(AllocationError) as caught:
        await allocators(timeout=0.1).call("slow", body())
    assert caught.value.error_code == 400210
    assert "0.1 s" in caught.value.message


@pytest.mark.parametrize(
    ("spec", "words"),
    [
        ("no_colon", "not package.module:function"),
        ("no.such.module:f", "cannot import"),
        (f"{MODULE}:missing", "has no 'missing'"),
        (f"{MODULE}:NOT_CALLABLE", "not callable"),
    ],
)
def test_a_bad_spec_is_told_at_start(spec: str, words: str) -> None:
    with pytest.raises(ValueError, match=words):
        load_function(spec)
    with pytest.raises(ValueError, match="allocator 'x'"):
        parse_allocator_specs({"x": spec})
