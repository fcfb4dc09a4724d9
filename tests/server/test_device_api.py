"""The HTTPS device runtime API, end to end over real TLS, on SQLite and PostgreSQL."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any

from aiohttp import web

from devprov.domain.records import Kind
from tests.conftest import Running, Webhook, start_devprov
from tests.helpers import (
    create_enrollment,
    create_group,
    device_request,
    device_token,
    group_device_key,
    primary_key,
    register,
)

PAYLOAD = {
    "modelId": "dtmi:contoso:toaster;1",
    "location": {"site": 7, "rack": [1, 2, {"u": None}]},
}


async def link(running: Running, *hubs: str) -> None:
    for hub in hubs:
        await running.service().link_hub(hub)


async def assert_nothing_recorded(running: Running, registration_id: str) -> None:
    store = running.devprov.store
    assert await store.get(Kind.REGISTRATION, registration_id.lower()) is None
    assert await store.count(Kind.OPERATION) == 0
    assert await store.count(Kind.HUB_DEVICE) == 0


async def test_group_device_payload_reaches_webhook_and_webhook_payload_reaches_device(
    devprov: Running, webhook: Webhook
) -> None:
    await link(devprov, "toasters.example", "heatpumps.example")
    group = await create_group(
        devprov,
        "toasters",
        allocationPolicy="custom",
        customAllocationDefinition={"webhookUrl": webhook.url, "apiVersion": "2021-10-01"},
        initialTwin={"tags": {"from": "enrollment"}},
    )
    answer = {"firmwareUrl": "https://fw.example/t-1.2.bin", "ticket": {"id": 42, "scopes": ["a"]}}
    webhook.answer(
        {
            "iotHubHostName": "heatpumps.example",
            "initialTwin": {"tags": {"from": "webhook"}, "properties": {"desired": {"on": True}}},
            "payload": answer,
        }
    )

    status, body, headers = await register(
        devprov, "toaster-7", group_device_key(group, "toaster-7"), payload=PAYLOAD
    )

    assert status == 200, body
    assert headers["Content-Type"].startswith("application/json")
    assert body["status"] == "assigned"
    state = body["registrationState"]
    assert state["assignedHub"] == "heatpumps.example"
    assert state["deviceId"] == "toaster-7"
    assert state["payload"] == answer
    assert state["substatus"] == "initialAssignment"
    (request,) = webhook.requests
    assert request["deviceRuntimeContext"]["payload"] == PAYLOAD
    assert request["deviceRuntimeContext"]["registrationId"] == "toaster-7"
    assert request["deviceRuntimeContext"]["symmetricKey"] == {}
    assert sorted(request["linkedHubs"]) == ["heatpumps.example", "toasters.example"]
    assert request["enrollmentGroup"]["enrollmentGroupId"] == "toasters"
    assert request["enrollmentGroup"]["attestation"] == {"type": "symmetricKey"}
    assert "individualEnrollment" not in request
    record = await devprov.service().get_registration("toaster-7")
    assert record["payload"] == answer
    assert record["symmetricKey"] == {"enrollmentGroupId": "toasters"}
    device = await devprov.service().call("GET", "/linkedHubs/heatpumps.example/devices/toaster-7")
    assert device["twin"] == {"tags": {"from": "webhook"}, "properties": {"desired": {"on": True}}}
    assert device["authentication"]["symmetricKey"]["primaryKey"] == group_device_key(
        group, "toaster-7"
    )


async def test_individual_enrollment_every_sdk_token_style(devprov: Running) -> None:
    await link(devprov, "hub.example")
    enrollment = await create_enrollment(devprov, "Dev-A", deviceId="device-a")
    for style in ("node", "python", "c"):
        status, body, _ = await register(devprov, "Dev-A", primary_key(enrollment), style=style)
        assert status == 200, (style, body)
        assert body["registrationState"]["deviceId"] == "device-a"
    secondary = enrollment["attestation"]["symmetricKey"]["secondaryKey"]
    status, body, _ = await register(devprov, "dev-a", secondary)
    assert status == 200, body
    assert body["registrationState"]["substatus"] == "reprovisionedToInitialAssignment"


async def test_slow_webhook_answers_202_then_poll_gives_result(
    devprov: Running, webhook: Webhook
) -> None:
    devprov.devprov.registrations.settings = type(devprov.devprov.registrations.settings)(
        devprov.id_scope, fast_path_seconds=0.05
    )
    await link(devprov, "hub.example")
    group = await create_group(
        devprov,
        "slow",
        allocationPolicy="custom",
        customAllocationDefinition={"webhookUrl": webhook.url, "apiVersion": "2021-10-01"},
    )

    async def slow(body: dict[str, Any]) -> web.StreamResponse:
        await asyncio.sleep(0.5)
        return web.json_response({"iotHubHostName": "hub.example", "payload": {"late": True}})

    webhook.behaviour = slow
    key = group_device_key(group, "slow-1")
    status, body, headers = await register(devprov, "slow-1", key)
    assert status == 202, body
    assert body["status"] == "assigning"
    assert headers["Retry-After"] == "1"
    operation = body["operationId"]
    assert set(operation) <= set("abcdefghijklmnopqrstuvwxyz0123456789.-")
    path = f"/{devprov.id_scope}/registrations/slow-1/operations/{operation}?api-version=2019-03-31"
    token = device_token(f"{devprov.id_scope}/registrations/slow-1", key)
    for _ in range(50):
        status, body, _ = await device_request(devprov, "GET", path, body={}, authorization=token)
        if status == 200:
            break
        assert status == 202 and body["status"] == "assigning"
        await asyncio.sleep(0.1)
    assert status == 200 and body["status"] == "assigned", body
    assert body["registrationState"]["payload"] == {"late": True}


async def test_status_lookup_returns_the_registration_result(devprov: Running) -> None:
    await link(devprov, "hub.example")
    enrollment = await create_enrollment(devprov, "lookup-1")
    key = primary_key(enrollment)
    path = f"/{devprov.id_scope}/registrations/lookup-1?api-version=2021-06-01"
    token = device_token(f"{devprov.id_scope}/registrations/lookup-1", key)
    status, body, _ = await device_request(
        devprov, "POST", path, body={"registrationId": "lookup-1"}, authorization=token
    )
    assert (status, body["status"]) == (200, "unassigned")
    await register(devprov, "lookup-1", key)
    status, body, _ = await device_request(
        devprov, "POST", path, body={"registrationId": "lookup-1"}, authorization=token
    )
    assert (status, body["status"], body["assignedHub"]) == (200, "assigned", "hub.example")


# Refusals: each gets its own error, and nothing is recorded -----------------------------


async def expect_refusal(
    running: Running, result: tuple[int, Any, dict[str, str]], status: int, code: int, words: str
) -> None:
    got_status, body, headers = result
    assert got_status == status, body
    assert body["errorCode"] == code, body
    assert words.lower() in body["message"].lower(), body
    assert body["trackingId"]
    assert headers["x-ms-error-code"] == str(code)


async def test_wrong_key_is_refused(devprov: Running) -> None:
    await link(devprov, "hub.example")
    enrollment = await create_enrollment(devprov, "dev-w")
    wrong = (await create_enrollment(devprov, "other"))["attestation"]["symmetricKey"]["primaryKey"]
    assert wrong != primary_key(enrollment)
    await expect_refusal(
        devprov, await register(devprov, "dev-w", wrong), 401, 401000, "not signed"
    )
    await assert_nothing_recorded(devprov, "dev-w")


async def test_expired_token_is_refused(devprov: Running) -> None:
    enrollment = await create_enrollment(devprov, "dev-e")
    token = device_token(
        f"{devprov.id_scope}/registrations/dev-e",
        primary_key(enrollment),
        expiry=int(time.time()) - 5,
    )
    await expect_refusal(
        devprov, await register(devprov, "dev-e", "", authorization=token), 401, 401001, "expired"
    )
    await assert_nothing_recorded(devprov, "dev-e")


async def test_another_devices_token_is_refused(devprov: Running) -> None:
    await link(devprov, "hub.example")
    group = await create_group(devprov, "g")
    token_for_b = device_token(
        f"{devprov.id_scope}/registrations/dev-b", group_device_key(group, "dev-b")
    )
    await expect_refusal(
        devprov,
        await register(devprov, "dev-a", "", authorization=token_for_b),
        401,
        401000,
        "registrations/dev-b",
    )
    await assert_nothing_recorded(devprov, "dev-a")


async def test_unknown_registration_id_is_refused(devprov: Running) -> None:
    await link(devprov, "hub.example")
    stranger_key = "c3RyYW5nZXIta2V5LXRoYXQtbWF0Y2hlcy1ub3RoaW5n"
    await expect_refusal(
        devprov, await register(devprov, "nobody", stranger_key), 401, 401000, "no enrollment"
    )
    await assert_nothing_recorded(devprov, "nobody")


async def test_disabled_enrollment_and_group_are_refused(devprov: Running) -> None:
    await link(devprov, "hub.example")
    enrollment = await create_enrollment(devprov, "dev-d", provisioningStatus="disabled")
    await expect_refusal(
        devprov, await register(devprov, "dev-d", primary_key(enrollment)), 403, 403001, "disabled"
    )
    group = await create_group(devprov, "off", provisioningStatus="disabled")
    await expect_refusal(
        devprov,
        await register(devprov, "dev-g", group_device_key(group, "dev-g")),
        403,
        403001,
        "'off' is disabled",
    )
    await assert_nothing_recorded(devprov, "dev-d")
    await assert_nothing_recorded(devprov, "dev-g")


async def test_malformed_json_is_refused(devprov: Running) -> None:
    enrollment = await create_enrollment(devprov, "dev-j")
    token = device_token(f"{devprov.id_scope}/registrations/dev-j", primary_key(enrollment))
    path = f"/{devprov.id_scope}/registrations/dev-j/register?api-version=2019-03-31"
    result = await device_request(
        devprov, "PUT", path, raw=b'{"registrationId": "dev-j", "payload": {', authorization=token
    )
    await expect_refusal(devprov, result, 400, 400001, "not valid JSON")
    result = await device_request(devprov, "PUT", path, raw=b"[1, 2]", authorization=token)
    await expect_refusal(devprov, result, 400, 400004, "JSON object")
    await assert_nothing_recorded(devprov, "dev-j")


async def test_oversize_payload_is_refused(devprov: Running) -> None:
    await link(devprov, "hub.example")
    enrollment = await create_enrollment(devprov, "dev-big")
    key = primary_key(enrollment)
    big = {"blob": "x" * (96 * 1024)}
    await expect_refusal(
        devprov, await register(devprov, "dev-big", key, payload=big), 413, 413001, "at most 98304"
    )
    await assert_nothing_recorded(devprov, "dev-big")
    fits = {"blob": "x" * (90 * 1024)}
    status, body, _ = await register(devprov, "dev-big", key, payload=fits)
    assert status == 200, body


async def test_registration_id_in_body_must_match_path(devprov: Running) -> None:
    enrollment = await create_enrollment(devprov, "dev-m")
    token = device_token(f"{devprov.id_scope}/registrations/dev-m", primary_key(enrollment))
    path = f"/{devprov.id_scope}/registrations/dev-m/register?api-version=2019-03-31"
    result = await device_request(
        devprov, "PUT", path, body={"registrationId": "someone-else"}, authorization=token
    )
    await expect_refusal(devprov, result, 400, 400005, "differs")


async def _custom_group(running: Running, webhook: Webhook) -> str:
    await link(running, "hub-a.example", "hub-b.example")
    group = await create_group(
        running,
        "custom",
        allocationPolicy="custom",
        customAllocationDefinition={"webhookUrl": webhook.url, "apiVersion": "2021-10-01"},
    )
    return group_device_key(group, "dev-c")


async def assert_failed(
    running: Running, result: tuple[int, Any, dict[str, str]], code: int, words: str
) -> None:
    status, body, _ = result
    assert status == 200, body
    assert body["status"] == "failed", body
    state = body["registrationState"]
    assert state["errorCode"] == code, state
    assert words in state["errorMessage"], state
    record = await running.service().get_registration("dev-c")
    assert (record["status"], record["errorCode"]) == ("failed", code)
    assert "assignedHub" not in record
    assert await running.devprov.store.count(Kind.HUB_DEVICE) == 0


async def test_webhook_500_fails_with_400207(devprov: Running, webhook: Webhook) -> None:
    key = await _custom_group(devprov, webhook)
    webhook.answer({"oops": True}, status=500)
    result = await register(devprov, "dev-c", key)
    await assert_failed(devprov, result, 400207, "Custom allocation failed with status code: 500")


async def test_webhook_timeout_fails_with_its_own_code(
    database_url: str, tmp_path: Path, webhook: Webhook
) -> None:
    devprov = await start_devprov(tmp_path / "data", database_url, webhook_timeout=0.3)
    try:
        key = await _custom_group(devprov, webhook)

        async def hang(body: dict[str, Any]) -> web.StreamResponse:
            await asyncio.sleep(5)
            return web.json_response({})

        webhook.behaviour = hang
        result = await register(devprov, "dev-c", key)
        await assert_failed(devprov, result, 400210, "did not answer within 0.3 s")
    finally:
        await devprov.devprov.close()


async def test_webhook_garbage_fails_with_its_own_code(devprov: Running, webhook: Webhook) -> None:
    key = await _custom_group(devprov, webhook)

    async def garbage(body: dict[str, Any]) -> web.StreamResponse:
        return web.Response(text="<html>not json</html>", content_type="text/html")

    webhook.behaviour = garbage
    result = await register(devprov, "dev-c", key)
    await assert_failed(devprov, result, 400212, "not JSON")


async def test_webhook_unlinked_hub_fails_with_its_own_code(
    devprov: Running, webhook: Webhook
) -> None:
    key = await _custom_group(devprov, webhook)
    webhook.answer({"iotHubHostName": "rogue.example"})
    result = await register(devprov, "dev-c", key)
    await assert_failed(devprov, result, 400209, "'rogue.example'")


async def test_webhook_without_hub_fails_with_400208(devprov: Running, webhook: Webhook) -> None:
    key = await _custom_group(devprov, webhook)
    webhook.answer({"payload": {"no": "hub"}})
    result = await register(devprov, "dev-c", key)
    await assert_failed(devprov, result, 400208, "iotHubHostName")


async def test_unreachable_webhook_fails_with_its_own_code(devprov: Running) -> None:
    dead = Webhook(url="http://127.0.0.1:9/allocate")
    key = await _custom_group(devprov, dead)
    result = await register(devprov, "dev-c", key)
    await assert_failed(devprov, result, 400211, "could not be reached")


async def test_no_linked_hub_fails_with_400208(devprov: Running) -> None:
    enrollment = await create_enrollment(devprov, "dev-c")
    result = await register(devprov, "dev-c", primary_key(enrollment))
    await assert_failed(devprov, result, 400208, "No linked IoT hub")
