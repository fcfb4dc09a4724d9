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
from devprov.allocation.webhook import WebhookClient, WebhookExchange, allocation_request
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


async def test_every_exchange_is_told_to_the_observer(webhook: Webhook) -> None:
    exchanges: list[WebhookExchange] = []
    observed = WebhookClient(timeout_seconds=5, observer=exchanges.append)
    try:
        webhook.answer({"iotHubHostName": "toasters.example"})
        await observed.allocate(webhook.url, request_body())
        webhook.answer({"error": "no"}, status=500)
        with pytest.raises(AllocationError):
            await observed.allocate(webhook.url, request_body())
    finally:
        await observed.close()
    good, bad = exchanges
    assert (good.status, good.error, good.request) == (200, None, request_body())
    assert good.answer is not None and json.loads(good.answer)["iotHubHostName"]
    assert bad.status == 500 and bad.error is not None and bad.error.error_code == 400207
    assert good.seconds >= 0 and good.url == webhook.url


async def test_an_observer_that_raises_does_not_fail_the_allocation(webhook: Webhook) -> None:
    def broken(exchange: WebhookExchange) -> None:
        raise RuntimeError("observer bug")

    observed = WebhookClient(timeout_seconds=5, observer=broken)
    try:
        answer = await observed.allocate(webhook.url, request_body())
    finally:
        await observed.close()
    assert answer.iot_hub_host_name == "toasters.example"
