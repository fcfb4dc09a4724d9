"""The official Node device SDK (HTTP transport, symmetric key) against devprov, unmodified."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from aiohttp import web

from tests.conftest import Running, Webhook, fixed_ports
from tests.helpers import (
    create_enrollment,
    create_group,
    custom_allocation,
    group_device_key,
    primary_key,
)
from tests.interop.node_harness import run_node

pytestmark = fixed_ports

DEVICE_PAYLOAD = {"modelId": "dtmi:contoso:toaster;1", "location": {"site": 7}}
HUBS = ["toasters.example", "kettles.example"]
WEBHOOK_PAYLOAD = {"firmwareUrl": "https://fw.example/toaster-2.1.bin", "ticket": "t-123"}


TRANSPORTS = pytest.mark.parametrize("transport", ["http", "mqtt", "mqttws"])


async def node_register(
    running: Running,
    registration_id: str,
    key: str,
    payload: Any = None,
    transport: str = "http",
) -> dict[str, Any]:
    request: dict[str, Any] = {
        "host": "localhost",
        "idScope": running.id_scope,
        "registrationId": registration_id,
        "symmetricKey": key,
        "transport": transport,
    }
    if payload is not None:
        request["payload"] = payload
    result: dict[str, Any] = await run_node("device.js", request, running.ca)
    return result


@TRANSPORTS
async def test_individual_device_gets_the_webhook_payload(
    devprov: Running, webhook: Webhook, transport: str
) -> None:
    enrollment = await create_enrollment(
        devprov,
        "node-toaster-1",
        **await custom_allocation(devprov, webhook, HUBS, WEBHOOK_PAYLOAD),
    )

    outcome = await node_register(
        devprov, "node-toaster-1", primary_key(enrollment), DEVICE_PAYLOAD, transport
    )

    assert outcome["ok"], outcome
    state = outcome["result"]
    assert state["assignedHub"] == "toasters.example"
    assert state["deviceId"] == "node-toaster-1"
    assert state["payload"] == WEBHOOK_PAYLOAD
    (request,) = webhook.requests
    assert request["deviceRuntimeContext"]["payload"] == DEVICE_PAYLOAD
    assert request["individualEnrollment"]["registrationId"] == "node-toaster-1"
    record = await devprov.service().get_registration("node-toaster-1")
    assert record["payload"] == WEBHOOK_PAYLOAD


@TRANSPORTS
async def test_group_device_gets_the_webhook_payload(
    devprov: Running, webhook: Webhook, transport: str
) -> None:
    group = await create_group(
        devprov, "node-toasters", **await custom_allocation(devprov, webhook, HUBS, WEBHOOK_PAYLOAD)
    )
    key = group_device_key(group, "node-toaster-2")

    outcome = await node_register(devprov, "node-toaster-2", key, DEVICE_PAYLOAD, transport)

    assert outcome["ok"], outcome
    assert outcome["result"]["payload"] == WEBHOOK_PAYLOAD
    assert outcome["result"]["assignedHub"] == "toasters.example"
    assert webhook.requests[0]["deviceRuntimeContext"]["payload"] == DEVICE_PAYLOAD
    assert webhook.requests[0]["enrollmentGroup"]["enrollmentGroupId"] == "node-toasters"
    again = await node_register(devprov, "node-toaster-2", key, DEVICE_PAYLOAD, transport)
    assert again["ok"], again
    assert len(webhook.requests) == 2


@TRANSPORTS
async def test_slow_webhook_makes_the_device_poll(
    devprov: Running, webhook: Webhook, transport: str
) -> None:
    settings = devprov.devprov.registrations.settings
    devprov.devprov.registrations.settings = type(settings)(
        settings.id_scope, fast_path_seconds=0.05
    )
    group = await create_group(
        devprov, "node-slow", **await custom_allocation(devprov, webhook, HUBS, WEBHOOK_PAYLOAD)
    )

    async def slow(body: dict[str, Any]) -> web.StreamResponse:
        await asyncio.sleep(0.3)
        return web.json_response({"iotHubHostName": "kettles.example", "payload": {"slow": 1}})

    webhook.behaviour = slow
    outcome = await node_register(
        devprov, "node-slow-1", group_device_key(group, "node-slow-1"), transport=transport
    )

    assert outcome["ok"], outcome
    assert outcome["result"]["assignedHub"] == "kettles.example"
    assert outcome["result"]["payload"] == {"slow": 1}


async def test_wrong_key_is_refused(devprov: Running) -> None:
    await devprov.service().link_hub("hub.example")
    await create_enrollment(devprov, "node-wrong")
    other = await create_enrollment(devprov, "node-other")

    outcome = await node_register(devprov, "node-wrong", primary_key(other))

    assert not outcome["ok"]
    assert outcome["error"]["statusCode"] == 401
    assert '"errorCode":401000' in outcome["error"]["responseBody"]


@pytest.mark.parametrize("transport", ["mqtt", "mqttws"])
async def test_wrong_key_is_refused_at_connect(devprov: Running, transport: str) -> None:
    await devprov.service().link_hub("hub.example")
    await create_enrollment(devprov, "node-wrong")
    other = await create_enrollment(devprov, "node-other")

    outcome = await node_register(devprov, "node-wrong", primary_key(other), transport=transport)

    assert not outcome["ok"]
    assert outcome["error"].get("code") == 5, outcome


async def test_webhook_failure_reaches_the_device(devprov: Running, webhook: Webhook) -> None:
    enrollment = await create_enrollment(
        devprov, "node-fail", **await custom_allocation(devprov, webhook, HUBS, WEBHOOK_PAYLOAD)
    )
    webhook.answer({"error": "no capacity"}, status=500)

    outcome = await node_register(devprov, "node-fail", primary_key(enrollment))

    assert not outcome["ok"]
    assert outcome["error"]["name"] == "ProvisioningRegistrationFailedError"
    state = outcome["error"]["result"]["registrationState"]
    assert state["errorCode"] == 400207
    assert state["errorMessage"] == "Custom allocation failed with status code: 500"
