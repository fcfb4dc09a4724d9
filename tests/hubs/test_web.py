"""Retries inside a budget, against real HTTP servers on loopback that throttle, fail or hang.

The real hubs cannot be told to answer 429 or 500; these servers stand in for one that does.
"""

from __future__ import annotations

import asyncio
import ssl
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from aiohttp import web

from devprov.domain.models import LinkedHub
from devprov.hubs import azure_iothub
from devprov.hubs.connector import ConnectorError, DeviceIdentity
from devprov.hubs.web import WebClient
from devprov.server.tls import ensure_certificates
from tests.conftest import free_port

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
KEY = "c2VjcmV0LWtleS1zZWNyZXQta2V5LXNlY3JldC1rZXk="


@dataclass
class Server:
    url: str
    seen: list[tuple[str, str, str | None]] = field(default_factory=list)


async def serve(
    handler: Handler, context: ssl.SSLContext | None = None
) -> tuple[Server, web.AppRunner]:
    server = Server("")

    async def record(request: web.Request) -> web.StreamResponse:
        server.seen.append((request.method, request.path, request.headers.get("If-Match")))
        return await handler(request)

    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", record)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port, ssl_context=context).start()
    server.url = f"{'https' if context else 'http'}://127.0.0.1:{port}"
    return server, runner


@pytest.fixture
async def runners() -> AsyncIterator[list[web.AppRunner]]:
    started: list[web.AppRunner] = []
    yield started
    for runner in started:
        await runner.cleanup()


def answers(*statuses: int, retry_after: str | None = None) -> Handler:
    """Answer with these statuses in turn, then 200."""
    queue = list(statuses)

    async def handle(_: web.Request) -> web.StreamResponse:
        status = queue.pop(0) if queue else 200
        headers = {"Retry-After": retry_after} if retry_after and status == 429 else {}
        return web.json_response({"status": status}, status=status, headers=headers)

    return handle


async def call(client: WebClient, url: str) -> tuple[int, int, int]:
    """(status, attempts, how many times headers were made)."""
    made = []

    def headers(body: bytes) -> dict[str, str]:
        made.append(body)
        return {"X-Attempt": str(len(made))}

    answer = await client.request("PUT", url, deadline=client.deadline(), headers=headers,
                                  body=b"{}")  # fmt: skip
    return answer.status, answer.attempts, len(made)


async def test_throttling_and_server_errors_are_retried_with_fresh_headers(
    runners: list[web.AppRunner],
) -> None:
    server, runner = await serve(answers(429, 503, 500, retry_after="0"))
    runners.append(runner)
    client = WebClient("test hub", 5.0, None)
    try:
        assert await call(client, server.url + "/devices/d") == (200, 4, 4)
        server2, runner2 = await serve(answers(400))
        runners.append(runner2)
        assert await call(client, server2.url + "/x") == (400, 1, 1)  # a refusal is final
    finally:
        await client.close()


async def test_a_hub_that_keeps_failing_gives_its_last_answer_when_the_budget_ends(
    runners: list[web.AppRunner],
) -> None:
    server, runner = await serve(answers(*[503] * 1000))
    runners.append(runner)
    client = WebClient("test hub", 1.0, None)
    try:
        status, attempts, _ = await call(client, server.url)
    finally:
        await client.close()
    assert status == 503 and attempts > 1


async def test_refused_connections_and_hangs_are_connector_errors_naming_the_hub(
    runners: list[web.AppRunner],
) -> None:
    client = WebClient("test hub 127.0.0.1", 1.0, None)

    async def hang(_: web.Request) -> web.StreamResponse:
        await asyncio.sleep(2)  # past the budget; short, as the server waits for it to stop
        raise AssertionError("unreachable")

    server, runner = await serve(hang)
    runners.append(runner)
    try:
        with pytest.raises(ConnectorError, match=r"cannot connect to test hub .*attempts\)"):
            await call(client, f"http://127.0.0.1:{free_port()}/")
        with pytest.raises(ConnectorError, match=r"127\.0\.0\.1 did not answer within 1 s"):
            await call(client, server.url)
    finally:
        await client.close()


async def test_an_identity_whose_twin_cannot_be_applied_is_deleted_again(
    runners: list[web.AppRunner], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An IoT hub that creates the device, then fails every twin PATCH: once the budget is
    spent, the connector deletes the device it created and reports the hub's answer."""
    tls = ensure_certificates(tmp_path, ["127.0.0.1"])
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(tls.cert, tls.key)

    async def hub(request: web.Request) -> web.StreamResponse:
        if request.method == "PATCH":
            return web.json_response({"Message": "ErrorCode:ServerError;boom"}, status=500,
                                     headers={"iothub-errorcode": "ServerError"})  # fmt: skip
        return web.json_response({}, status=204 if request.method == "DELETE" else 200)

    server, runner = await serve(hub, context)
    runners.append(runner)
    monkeypatch.setenv("SSL_CERT_FILE", str(tls.ca_cert))
    host = server.url.removeprefix("https://")
    linked = LinkedHub(
        host_name="127.0.0.1",
        connector="azure-iothub",
        connection_string=f"HostName={host};SharedAccessKeyName=iothubowner;SharedAccessKey={KEY}",
    )
    connector = azure_iothub.build(linked, 1.0)
    await connector.start()
    identity = DeviceIdentity(
        "127.0.0.1", "d1", "d1", {"type": "sas"}, initial_twin={"tags": {"a": 1}}
    )
    try:
        with pytest.raises(ConnectorError, match=r"answered 500 ServerError after \d+ attempts"):
            await connector.upsert_device(linked, identity)
    finally:
        await connector.close()
    methods = [(method, if_match) for method, _, if_match in server.seen]
    assert methods[0] == ("PUT", None) and ("PATCH", '"*"') in methods
    assert methods[-1] == ("DELETE", '"*"')
