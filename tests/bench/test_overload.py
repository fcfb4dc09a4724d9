"""Ten times more devices than devprov admits at once, each honouring Retry-After: what it
admits is answered at its normal latency, the rest is shed with 429, and the first register
after the flood is admitted at once. The soak version prints RELIABILITY.md's figures."""

from __future__ import annotations

import asyncio
import ssl
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web

from devprov.bench.processes import process_tree, rss_mb
from devprov.bench.runner import BenchConfig, devprov_server
from devprov.client.service import ServiceClient
from devprov.domain.keys import derive_device_key
from devprov.process import raise_file_limit
from tests.conftest import Running, Webhook, start_devprov
from tests.helpers import (
    create_group,
    custom_allocation,
    device_token,
    group_device_key,
    register,
)

WEBHOOK_SECONDS = 0.05  # what one registration costs beyond devprov's own work


@dataclass
class Server:
    """Where the devices register, and (in this process) how many registrations are in flight."""

    port: int
    id_scope: str
    ca: str
    in_flight: Callable[[], int] | None = None
    rss_mb: Callable[[], float] | None = None


@dataclass
class Flood:
    admitted: list[float] = field(default_factory=list)  # latencies of admitted registers
    throttled: int = 0
    other: list[int] = field(default_factory=list)
    peak_in_flight: int = 0
    peak_rss_mb: float = 0.0

    @property
    def total(self) -> int:
        return len(self.admitted) + self.throttled + len(self.other)

    def p(self, share: float) -> float:
        ordered = sorted(self.admitted)
        return ordered[min(len(ordered) - 1, int(share * len(ordered)))] if ordered else 0.0


async def flood(server: Server, group_key: str, clients: int, seconds: float, prefix: str) -> Flood:
    result = Flood()
    context = ssl.create_default_context(cafile=server.ca)
    deadline = time.monotonic() + seconds
    base = f"https://localhost:{server.port}/{server.id_scope}/registrations"

    async def device_loop(number: int, http: aiohttp.ClientSession) -> None:
        attempt = 0
        while time.monotonic() < deadline:
            rid = f"{prefix}-{number}-{attempt}"
            token = device_token(
                f"{server.id_scope}/registrations/{rid}", derive_device_key(group_key, rid)
            )
            started = time.perf_counter()
            async with http.put(
                f"{base}/{rid}/register?api-version=2021-06-01",
                json={"registrationId": rid},
                headers={"Authorization": token},
            ) as response:
                await response.read()
                elapsed = time.perf_counter() - started
                if response.status == 429:
                    result.throttled += 1
                    await asyncio.sleep(float(response.headers["Retry-After"]))
                    continue
                if response.status in (200, 202):
                    result.admitted.append(elapsed)
                else:
                    result.other.append(response.status)
            attempt += 1

    async def watch() -> None:
        while time.monotonic() < deadline:
            if server.in_flight is not None:
                result.peak_in_flight = max(result.peak_in_flight, server.in_flight())
            if server.rss_mb is not None:
                result.peak_rss_mb = max(result.peak_rss_mb, server.rss_mb())
            await asyncio.sleep(0.05)

    connector = aiohttp.TCPConnector(ssl=context, limit=0)
    async with aiohttp.ClientSession(connector=connector) as http:
        await asyncio.gather(watch(), *(device_loop(n, http) for n in range(clients)))
    return result


async def overloaded(
    tmp_path: Path, webhook: Webhook, cap: int, seconds: float
) -> tuple[Flood, Flood, float, Running]:
    running = await start_devprov(
        tmp_path / "data",
        f"sqlite:///{tmp_path / 'devprov.db'}",
        max_registrations_in_flight=cap,
        throttle_retry_after=1,
        log_level="WARNING",
    )
    fields = await custom_allocation(running, webhook, ["hub.example"], None)

    async def slowly(body: dict[str, Any]) -> web.StreamResponse:
        await asyncio.sleep(WEBHOOK_SECONDS)
        return web.json_response({"iotHubHostName": body["linkedHubs"][0]})

    webhook.behaviour = slowly
    group = await create_group(running, "flood", **fields)
    key = group["attestation"]["symmetricKey"]["primaryKey"]
    server = Server(
        running.port, running.id_scope, running.ca, lambda: running.devprov.registrations.in_flight
    )
    normal = await flood(server, key, cap, seconds, "normal")
    heavy = await flood(server, key, 10 * cap, seconds, "heavy")
    started = time.perf_counter()
    async with asyncio.timeout(30):
        while running.devprov.registrations.in_flight:  # noqa: ASYNC110
            await asyncio.sleep(0.01)
    recovered = time.perf_counter() - started
    return normal, heavy, recovered, running


async def test_ten_times_the_load_is_shed_with_429_and_recovers_at_once(
    tmp_path: Path, webhook: Webhook
) -> None:
    normal, heavy, _, running = await overloaded(tmp_path, webhook, cap=2, seconds=3.0)
    try:
        assert normal.other == heavy.other == []
        assert normal.throttled == 0
        assert heavy.throttled > 0
        assert heavy.peak_in_flight <= 2
        after = await create_group(running, "after")
        rid = "after-the-flood"
        status, body, _ = await register(running, rid, group_device_key(after, rid))
        assert status == 200, body  # admitted at once
    finally:
        await running.devprov.close()


def slow_webhook() -> tuple[web.AppRunner, Callable[[], Awaitable[str]]]:
    async def allocate(request: web.Request) -> web.StreamResponse:
        body = await request.json()
        await asyncio.sleep(WEBHOOK_SECONDS)
        return web.json_response({"iotHubHostName": body["linkedHubs"][0]})

    app = web.Application()
    app.router.add_post("/allocate", allocate)
    runner = web.AppRunner(app, access_log=None)

    async def start() -> str:
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        return f"http://127.0.0.1:{port}/allocate"

    return runner, start


@pytest.mark.soak
async def test_soak_ten_times_overload(monkeypatch: pytest.MonkeyPatch) -> None:
    """devprov in its own process (`devprov serve`, as the benchmarks run it), the devices and
    the webhook in this one."""
    cap, seconds = 20, 60.0  # 20 in flight: what this loaded 2-core machine serves at ease
    monkeypatch.setenv("DEVPROV_MAX_REGISTRATIONS_IN_FLIGHT", str(cap))  # Retry-After: 3 s
    raise_file_limit()
    webhook, start_webhook = slow_webhook()
    url = await start_webhook()
    try:
        with devprov_server(BenchConfig(scenarios=[], observability=False)) as (info, pid):
            assert pid is not None
            service = ServiceClient(
                info["serviceConnectionString"], ca_file=info["caCertificatePath"]
            )
            await service.link_hub("hub.example")
            group = await service.put_group(
                {
                    "enrollmentGroupId": "flood",
                    "attestation": {"type": "symmetricKey"},
                    "allocationPolicy": "custom",
                    "customAllocationDefinition": {"webhookUrl": url, "apiVersion": "2021-10-01"},
                }
            )
            key = group["attestation"]["symmetricKey"]["primaryKey"]
            pids = process_tree(pid)
            server = Server(
                info["httpsPort"],
                info["idScope"],
                info["caCertificatePath"],
                rss_mb=lambda: rss_mb(pids),
            )
            normal = await flood(server, key, cap, seconds, "normal")
            heavy = await flood(server, key, 10 * cap, seconds, "heavy")
            started = time.perf_counter()
            status, answer, _ = await _one_register(server, key, "after-the-flood")
            after_ms = (time.perf_counter() - started) * 1000
    finally:
        await webhook.cleanup()
    print(
        f"\nSOAK overload: devprov serve (1 process), cap {cap} in flight, webhook"
        f" {WEBHOOK_SECONDS * 1000:.0f} ms, {seconds:.0f} s each;"
        f" normal ({cap} devices): {len(normal.admitted) / seconds:.0f}/s admitted,"
        f" p50 {normal.p(0.5) * 1000:.0f} ms, p99 {normal.p(0.99) * 1000:.0f} ms,"
        f" server peak RSS {normal.peak_rss_mb:.0f} MB;"
        f" 10x ({10 * cap} devices, honouring Retry-After): {len(heavy.admitted) / seconds:.0f}/s"
        f" admitted, p50 {heavy.p(0.5) * 1000:.0f} ms, p99 {heavy.p(0.99) * 1000:.0f} ms,"
        f" 429 share {heavy.throttled / max(1, heavy.total):.0%},"
        f" server peak RSS {heavy.peak_rss_mb:.0f} MB;"
        f" first register after the flood: {status} in {after_ms:.0f} ms"
    )
    assert heavy.other == []
    assert status in (200, 202), answer


async def _one_register(server: Server, key: str, rid: str) -> tuple[int, Any, dict[str, str]]:
    context = ssl.create_default_context(cafile=server.ca)
    token = device_token(f"{server.id_scope}/registrations/{rid}", derive_device_key(key, rid))
    url = f"https://localhost:{server.port}/{server.id_scope}/registrations/{rid}/register"
    async with (
        aiohttp.ClientSession(connector=aiohttp.TCPConnector(ssl=context)) as http,
        http.put(
            url + "?api-version=2021-06-01",
            json={"registrationId": rid},
            headers={"Authorization": token},
        ) as response,
    ):
        return response.status, await response.json(), dict(response.headers)
