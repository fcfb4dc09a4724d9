"""The payload exchange through a running devprov: schemas, routes, allocators, the log."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from devprov.client.service import ServiceError
from devprov.domain.records import Kind
from devprov.store.exchanges import StoredExchanges
from tests.conftest import Running, Webhook, start_devprov
from tests.helpers import create_enrollment, create_group, group_device_key, primary_key, register

HUBS = ["kettles.example", "toasters.example"]
KETTLE = {"modelId": "dtmi:contoso:kettle;1", "site": "lyon"}
ROUTES = [
    {
        "match": {"required": ["modelId"], "properties": {"modelId": {"pattern": "kettle"}}},
        "iotHubHostName": "kettles.example",
        "initialTwin": {"tags": {"site": "{payload.site}"}},
        "payload": {"hello": "{registrationId}", "model": "{payload.modelId}"},
    }
]


@pytest.fixture
async def devprov(database_url: str, tmp_path: Path) -> AsyncIterator[Running]:
    running = await start_devprov(
        tmp_path / "data",
        database_url,
        allocators={"ByModel": "tests.allocation.sample_allocators:by_model"},
    )
    for hub in HUBS:
        await running.service().link_hub(hub)
    yield running
    await running.devprov.close()


def exchanges(running: Running) -> StoredExchanges:
    return StoredExchanges(running.devprov.store)


async def test_routes_are_kept_and_answer_without_any_allocator(devprov: Running) -> None:
    group = await create_group(devprov, "kettles", payloadRoutes=ROUTES)
    shown = await devprov.service().call("GET", "/enrollmentGroups/kettles")

    status, body, _ = await register(devprov, "k-1", group_device_key(group, "k-1"), payload=KETTLE)
    other_status, other, _ = await register(
        devprov, "t-1", group_device_key(group, "t-1"), payload={"modelId": "toaster"}
    )

    assert shown["payloadRoutes"] == ROUTES
    assert status == 200
    assert body["registrationState"]["assignedHub"] == "kettles.example"
    assert body["registrationState"]["payload"] == {"hello": "k-1", "model": KETTLE["modelId"]}
    device = await devprov.service().call("GET", "/linkedHubs/kettles.example/devices/k-1")
    assert device["twin"]["tags"] == {"site": "lyon"}
    assert other_status == 200 and other["status"] == "assigned"  # hashed, as no route matched
    assert await exchanges(devprov).recent() == []  # routes are not exchanges


async def test_a_payload_the_schema_refuses_is_400_and_leaves_no_trace(devprov: Running) -> None:
    schema = {
        "type": "object",
        "required": ["modelId"],
        "properties": {"modelId": {"type": "string"}},
    }
    enrollment = await create_enrollment(devprov, "strict-1", payloadSchema=schema)

    status, body, headers = await register(
        devprov, "strict-1", primary_key(enrollment), payload={"modelId": 7}
    )
    missing, _, _ = await register(devprov, "strict-1", primary_key(enrollment))
    accepted, _, _ = await register(
        devprov, "strict-1", primary_key(enrollment), payload={"modelId": "m"}
    )

    assert status == 400 and missing == 400
    assert body["errorCode"] == 400011
    assert "payload.modelId" in body["message"] and "'type'" in body["message"]
    assert headers.get("x-ms-error-code") in (None, "400011")
    assert accepted == 200
    devices = await devprov.service().call("GET", "/linkedHubs/kettles.example/devices")
    devices += await devprov.service().call("GET", "/linkedHubs/toasters.example/devices")
    assert len(devices) == 1


async def test_a_schema_that_is_not_valid_is_refused_when_written(devprov: Running) -> None:
    with pytest.raises(ServiceError) as refused:
        await create_group(devprov, "bad", payloadRoutes=[{"match": {"type": 3}}])
    assert refused.value.status == 400
    assert refused.value.body["errorCode"] == 400004
    assert "payloadRoutes[0].match" in refused.value.body["message"]


async def test_an_in_process_allocator_answers_as_a_webhook_would(devprov: Running) -> None:
    enrollment = await create_enrollment(
        devprov,
        "kettle-9",
        allocationPolicy="custom",
        customAllocationDefinition={
            "webhookUrl": "allocator://bymodel",
            "apiVersion": "2021-10-01",
        },
    )

    status, body, _ = await register(devprov, "kettle-9", primary_key(enrollment), payload=KETTLE)

    assert status == 200
    state = body["registrationState"]
    assert state["assignedHub"] == "kettles.example"
    assert state["payload"] == {"chosenBy": "by_model", "registrationId": "kettle-9"}
    [logged] = await exchanges(devprov).recent(registration_id="kettle-9")
    assert logged.target == "allocator://bymodel"
    assert logged.request["deviceRuntimeContext"]["payload"] == KETTLE
    assert logged.answer["payload"] == state["payload"]
    assert logged.error is None


async def test_an_allocator_that_is_not_configured_fails_the_registration(
    devprov: Running,
) -> None:
    enrollment = await create_enrollment(
        devprov,
        "kettle-10",
        allocationPolicy="custom",
        customAllocationDefinition={"webhookUrl": "allocator://nobody", "apiVersion": "2021-10-01"},
    )
    status, body, _ = await register(devprov, "kettle-10", primary_key(enrollment))
    assert status == 200
    assert body["status"] == "failed"
    assert body["registrationState"]["errorCode"] == 400211
    [logged] = await exchanges(devprov).recent(failed=True)
    assert logged.error is not None and logged.error["errorCode"] == 400211


async def test_webhook_exchanges_are_logged_without_keys(
    devprov: Running, webhook: Webhook
) -> None:
    webhook.answer({"iotHubHostName": "toasters.example", "payload": {"ticket": 1}})
    definition: dict[str, Any] = {
        "webhookUrl": webhook.url,
        "apiVersion": "2021-10-01",
        "webhookSecret": "per-enrollment",
    }
    group = await create_group(
        devprov, "hooked", allocationPolicy="custom", customAllocationDefinition=definition
    )
    shown = await devprov.service().call("GET", "/enrollmentGroups/hooked")

    await register(devprov, "h-1", group_device_key(group, "h-1"), payload={"a": 1})
    webhook.answer({"nope": True}, status=503)
    await register(devprov, "h-2", group_device_key(group, "h-2"))

    assert "webhookSecret" not in shown["customAllocationDefinition"]
    assert "per-enrollment" not in str(webhook.requests)
    failed, ok = await exchanges(devprov).recent(enrollment="group:hooked")
    assert ok.target.endswith("/allocate?code=***")
    assert ok.answer == {"iotHubHostName": "toasters.example", "payload": {"ticket": 1}}
    assert ok.status == 200 and ok.duration_ms > 0
    assert failed.status == 503 and failed.answer == {"nope": True}
    assert failed.error == {
        "errorCode": 400207,
        "message": "Custom allocation failed with status code: 503",
    }
    # An update that leaves the secret out keeps it (write-only, like keys).
    await devprov.service().put_group(shown)
    stored = await devprov.devprov.store.get(Kind.GROUP, "hooked")
    assert stored is not None
    assert stored.document["customAllocationDefinition"]["webhookSecret"] == "per-enrollment"
