"""The custom allocation webhook client against a real webhook on loopback."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Any

import pytest
from aiohttp import web

from devprov.allocation.policies import AllocationError
from devprov.allocation.webhook import WebhookClient, allocation_request
from devprov.client.webhooks import HEADER, signature_header, verify_signature
from tests.conftest import Webhook

HUBS = ["toasters.example", "Heatpumps.Example"]


def request_body(linked_hubs: list[str] | None = None) -> dict[str, Any]:
    return allocation_request(
        "enrollmentGroup",
        {
            "enrollmentGroupId": "toasters",
            "attestation": {"type": "symmetricKey"},
            "initialTwin": {"tags": {"ünïcode": "✓"}},
        },
        {
            "registrationId": "toaster-7",
            "symmetricKey": {},
            "payload": {"modelId": "dtmi:contoso:toaster;1", "n": [1, 2.5, None, True]},
        },
        HUBS if linked_hubs is None else linked_hubs,
    )


@pytest.fixture
async def client() -> AsyncIterator[WebhookClient]:
    webhooks = WebhookClient(timeout_seconds=5)
    yield webhooks
    await webhooks.close()


async def refusal(client: WebhookClient, webhook: Webhook) -> AllocationError:
    with pytest.raises(AllocationError) as caught:
        await client.allocate(webhook.url, request_body())
    assert caught.value.status == 400
    return caught.value


async def test_success_returns_hub_twin_and_payload(
    client: WebhookClient, webhook: Webhook
) -> None:
    twin = {"tags": {"deviceType": "toaster"}, "properties": {"desired": {"state": "ready"}}}
    webhook.answer(
        {"iotHubHostName": "toasters.example", "initialTwin": twin, "payload": {"k": [1, "v"]}}
    )
    answer = await client.allocate(webhook.url, request_body())
    assert answer.iot_hub_host_name == "toasters.example"
    assert answer.initial_twin == twin
    assert answer.payload == {"k": [1, "v"]}


async def test_request_body_is_posted_exactly_as_given(
    client: WebhookClient, webhook: Webhook
) -> None:
    body = request_body()
    await client.allocate(webhook.url, body)
    assert webhook.requests == [body]
    assert set(body) == {"enrollmentGroup", "deviceRuntimeContext", "linkedHubs"}


async def test_twin_and_payload_are_optional(client: WebhookClient, webhook: Webhook) -> None:
    webhook.answer({"iotHubHostName": "toasters.example"})
    answer = await client.allocate(webhook.url, request_body())
    assert (answer.initial_twin, answer.payload) == (None, None)


async def test_hub_is_matched_without_case_and_answered_as_linked(
    client: WebhookClient, webhook: Webhook
) -> None:
    webhook.answer({"iotHubHostName": "HEATPUMPS.example"})
    answer = await client.allocate(webhook.url, request_body())
    assert answer.iot_hub_host_name == "Heatpumps.Example"


async def test_non_2xx_is_400207_with_azures_message(
    client: WebhookClient, webhook: Webhook
) -> None:
    webhook.answer({"iotHubHostName": "toasters.example"}, status=503)
    error = await refusal(client, webhook)
    assert error.error_code == 400207
    assert error.message == "Custom allocation failed with status code: 503"


async def test_timeout_is_400210(webhook: Webhook) -> None:
    release = asyncio.Event()

    async def hang(_: dict[str, Any]) -> web.StreamResponse:
        await release.wait()
        return web.json_response({"iotHubHostName": "toasters.example"})

    webhook.behaviour = hang
    impatient = WebhookClient(timeout_seconds=0.2)
    try:
        error = await refusal(impatient, webhook)
    finally:
        release.set()
        await impatient.close()
    assert error.error_code == 400210
    assert "0.2 s" in error.message


async def test_unreachable_is_400211(client: WebhookClient, webhook: Webhook) -> None:
    with pytest.raises(AllocationError) as caught:
        await client.allocate("http://127.0.0.1:9/allocate", request_body())
    assert caught.value.error_code == 400211


async def test_body_that_is_not_json_is_400212(client: WebhookClient, webhook: Webhook) -> None:
    async def html(_: dict[str, Any]) -> web.StreamResponse:
        return web.Response(text="<html>oops</html>", content_type="text/html")

    webhook.behaviour = html
    error = await refusal(client, webhook)
    assert error.error_code == 400212
    assert "not JSON" in error.message
    assert "<html>oops</html>" in error.message


@asynccontextmanager
async def raw_webhook(
    handler: Callable[[web.Request], Awaitable[web.StreamResponse]],
) -> AsyncIterator[str]:
    """A webhook on loopback whose handler sees the aiohttp request itself."""
    app = web.Application()
    app.router.add_post("/allocate", handler)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    try:
        yield f"http://127.0.0.1:{port}/allocate"
    finally:
        await runner.cleanup()


async def test_an_answer_that_arrives_in_pieces_is_read_whole(client: WebhookClient) -> None:
    twin = {"tags": {"blob": "t" * 20000}}
    answer = json.dumps({"iotHubHostName": "toasters.example", "initialTwin": twin}).encode()

    async def in_two_pieces(request: web.Request) -> web.StreamResponse:
        await request.read()
        response = web.StreamResponse(headers={"Content-Type": "application/json"})
        response.content_length = len(answer)
        await response.prepare(request)
        await response.write(answer[:100])
        await asyncio.sleep(0.2)  # so that the first piece is read on its own
        await response.write(answer[100:])
        await response.write_eof()
        return response

    async with raw_webhook(in_two_pieces) as url:
        result = await client.allocate(url, request_body())
    assert result.initial_twin == twin


async def test_json_array_is_400212(client: WebhookClient, webhook: Webhook) -> None:
    webhook.answer([{"iotHubHostName": "toasters.example"}])
    error = await refusal(client, webhook)
    assert error.error_code == 400212
    assert "not a JSON object" in error.message


@pytest.mark.parametrize(
    "answer", [{}, {"payload": {"a": 1}}, {"iotHubHostName": ""}, {"iotHubHostName": 7}]
)
async def test_missing_hub_is_400208(
    client: WebhookClient, webhook: Webhook, answer: dict[str, Any]
) -> None:
    webhook.answer(answer)
    error = await refusal(client, webhook)
    assert error.error_code == 400208
    assert "iotHubHostName" in error.message


async def test_hub_not_offered_is_400209(client: WebhookClient, webhook: Webhook) -> None:
    webhook.answer({"iotHubHostName": "rogue.example"})
    error = await refusal(client, webhook)
    assert error.error_code == 400209
    assert "'rogue.example'" in error.message


@pytest.mark.parametrize("twin", [[], "tags", 3, True])
async def test_initial_twin_that_is_not_an_object_is_400212(
    client: WebhookClient, webhook: Webhook, twin: Any
) -> None:
    webhook.answer({"iotHubHostName": "toasters.example", "initialTwin": twin})
    error = await refusal(client, webhook)
    assert error.error_code == 400212
    assert "initialTwin" in error.message


async def test_one_client_serves_many_calls(client: WebhookClient, webhook: Webhook) -> None:
    for number in range(3):
        body = request_body()
        body["deviceRuntimeContext"]["registrationId"] = f"toaster-{number}"
        answer = await client.allocate(webhook.url, body)
        assert answer.iot_hub_host_name == "toasters.example"
    assert [r["deviceRuntimeContext"]["registrationId"] for r in webhook.requests] == [
        "toaster-0",
        "toaster-1",
        "toaster-2",
    ]


# Signing -------------------------------------------------------------------------------------


async def test_every_request_is_signed_over_the_exact_bytes_sent() -> None:
    seen: list[tuple[bytes, str | None]] = []

    async def verify(request: web.Request) -> web.StreamResponse:
        raw = await request.read()
        seen.append((raw, request.headers.get(HEADER)))
        if not verify_signature(raw, request.headers.get(HEADER), "s3cret"):
            return web.Response(status=401)
        return web.json_response({"iotHubHostName": json.loads(raw)["linkedHubs"][0]})

    signed = WebhookClient(timeout_seconds=5, secret="s3cret")
    try:
        async with raw_webhook(verify) as url:
            answer = await signed.allocate(url + "?code=abc", request_body())
            overridden = await signed.exchange(url, request_body(), "another")
    finally:
        await signed.close()

    assert answer.iot_hub_host_name == "toasters.example"
    raw, header = seen[0]
    assert header is not None and header.startswith("t=") and ",v1=" in header
    assert json.loads(raw) == request_body()
    # An enrollment's own secret replaces the server's: this webhook knows only the server's.
    assert overridden.status == 401
    assert overridden.error is not None and overridden.error.error_code == 400207


def test_the_signature_rejects_other_bodies_other_secrets_and_stale_times() -> None:
    body = b'{"linkedHubs":["a"]}'
    header = signature_header("k", body, 1_000_000)
    assert verify_signature(body, header, "k", now=1_000_100)
    assert not verify_signature(body + b" ", header, "k", now=1_000_100)
    assert not verify_signature(body, header, "other", now=1_000_100)
    assert not verify_signature(body, header, "k", now=1_000_301)  # older than 300 s
    assert verify_signature(body, header, "k", now=1_000_500, tolerance_seconds=600)
    assert not verify_signature(body, None, "k")
    assert not verify_signature(body, "v1=abc", "k")
    rotated = f"{header},v1={'0' * 64}"
    assert verify_signature(body, rotated, "k", now=1_000_000)


async def test_unsigned_without_a_secret(client: WebhookClient) -> None:
    headers: list[str | None] = []

    async def look(request: web.Request) -> web.StreamResponse:
        headers.append(request.headers.get(HEADER))
        return web.json_response({"iotHubHostName": "toasters.example"})

    async with raw_webhook(look) as url:
        await client.allocate(url, request_body())
    assert headers == [None]


# Retries -------------------------------------------------------------------------------------


def flaky(statuses: list[int]) -> Callable[[web.Request], Awaitable[web.StreamResponse]]:
    """A webhook that answers these statuses in turn, then 200."""
    remaining = list(statuses)

    async def answer(request: web.Request) -> web.StreamResponse:
        await request.read()
        if remaining:
            return web.Response(status=remaining.pop(0))
        return web.json_response({"iotHubHostName": "toasters.example"})

    return answer


async def test_no_retries_by_default_as_dps(client: WebhookClient) -> None:
    async with raw_webhook(flaky([503])) as url:
        exchanged = await client.exchange(url, request_body())
    assert exchanged.error is not None and exchanged.error.error_code == 400207
    assert [attempt.status for attempt in exchanged.attempts] == [503]


async def test_502_503_504_are_retried_when_asked() -> None:
    patient = WebhookClient(timeout_seconds=10, retries=3)
    try:
        async with raw_webhook(flaky([502, 503, 504])) as url:
            exchanged = await patient.exchange(url, request_body())
    finally:
        await patient.close()
    assert exchanged.error is None
    assert [attempt.status for attempt in exchanged.attempts] == [502, 503, 504, 200]


async def test_other_failures_are_not_retried() -> None:
    patient = WebhookClient(timeout_seconds=10, retries=3)
    try:
        async with raw_webhook(flaky([500])) as url:
            exchanged = await patient.exchange(url, request_body())
    finally:
        await patient.close()
    assert exchanged.error is not None and exchanged.error.error_code == 400207
    assert len(exchanged.attempts) == 1


async def test_a_connect_failure_is_retried_then_reported() -> None:
    patient = WebhookClient(timeout_seconds=10, retries=2)
    try:
        exchanged = await patient.exchange("http://127.0.0.1:9/allocate", request_body())
    finally:
        await patient.close()
    assert exchanged.error is not None and exchanged.error.error_code == 400211
    assert len(exchanged.attempts) == 3
    assert all(attempt.status is None for attempt in exchanged.attempts)


async def test_retries_stay_within_the_time_budget() -> None:
    hasty = WebhookClient(timeout_seconds=0.05, retries=10)
    try:
        async with raw_webhook(flaky([503] * 20)) as url:
            exchanged = await hasty.exchange(url, request_body())
    finally:
        await hasty.close()
    assert exchanged.error is not None
    assert sum(attempt.seconds for attempt in exchanged.attempts) < 5
    assert len(exchanged.attempts) < 11


async def test_a_redirect_loop_is_not_followed_but_reported_as_400207(
    client: WebhookClient,
) -> None:
    async def loop_back(request: web.Request) -> web.StreamResponse:
        await request.read()
        raise web.HTTPTemporaryRedirect(str(request.url))

    async with raw_webhook(loop_back) as url:
        with pytest.raises(AllocationError) as caught:
            await client.allocate(url, request_body())
    assert caught.value.error_code == 400207
    assert "307" in caught.value.message


async def test_a_10_mb_answer_is_400212_and_not_read_whole(client: WebhookClient) -> None:
    sent = 0

    async def huge(request: web.Request) -> web.StreamResponse:
        nonlocal sent
        await request.read()
        response = web.StreamResponse(headers={"Content-Type": "application/json"})
        response.content_length = 10 * 1024 * 1024
        await response.prepare(request)
        chunk = b" " * 65536
        try:
            for _ in range(160):
                await response.write(chunk)
                sent += len(chunk)
        except (ConnectionError, RuntimeError):
            pass
        return response

    async with raw_webhook(huge) as url:
        with pytest.raises(AllocationError) as caught:
            await client.allocate(url, request_body())
    assert caught.value.error_code == 400212
    assert "more than 1 MB" in caught.value.message


async def test_an_answer_that_breaks_off_mid_body_is_400212(client: WebhookClient) -> None:
    async def broken(request: web.Request) -> web.StreamResponse:
        await request.read()
        response = web.StreamResponse(headers={"Content-Type": "application/json"})
        response.content_length = 1000
        await response.prepare(request)
        await response.write(b'{"iotHubHostName": "toast')
        assert request.transport is not None
        request.transport.abort()
        return response

    async with raw_webhook(broken) as url:
        with pytest.raises(AllocationError) as caught:
            await client.allocate(url, request_body())
    assert caught.value.error_code == 400212
    assert "broke off" in caught.value.message


async def test_waiting_for_a_pooled_connection_does_not_eat_the_timeout() -> None:
    """300 calls at once to a webhook answering in 1 s, under a 2.5 s time-out: each reaches
    the webhook at once (a 100-connection pool made two thirds of them wait 1 and 2 s)."""
    started = 0
    seen = asyncio.Event()

    async def slow(request: web.Request) -> web.StreamResponse:
        nonlocal started
        body = await request.json()
        started += 1
        if started == 300:
            seen.set()
        await asyncio.sleep(1.0)
        return web.json_response({"iotHubHostName": body["linkedHubs"][0]})

    webhooks = WebhookClient(timeout_seconds=2.5)
    try:
        async with raw_webhook(slow) as url:
            results = await asyncio.gather(
                *(webhooks.exchange(url, request_body()) for _ in range(300))
            )
    finally:
        await webhooks.close()
    assert seen.is_set()
    assert [r.error for r in results if r.error is not None] == []
