"""Ten times more devices than devprov admits at once, each honouring Retry-After: what it
admits is answered at its normal latency, the rest is shed with 429, and the first register
after the flood is admitted at once. The soak version prints RELIABILITY.md's figures."""

from __future__ import annotations

import asyncio
import resource
import ssl
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web

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
class Flood:
    admitted: list[float] = field(default_factory=list)  # latencies of admitted registers
    throttled: int = 0
    other: list[int] = field(default_factory=list)
    peak_in_flight: int = 0

    @property
    def total(self) -> int:
        return len(self.admitted) + self.throttled + len(self.other)

    def p(self, share: float) -> float:
        ordered = sorted(self.admitted)
        return ordered[min(len(ordered) - 1, int(share * len(ordered)))] if ordered else 0.0


async def flood(
    running: Running, group: dict[str, Any], clients: int, seconds: float, prefix: str
) -> Flood:
    result = Flood()
    context = ssl.create_default_context(cafile=running.ca)
    deadline = time.monotonic() + seconds
    base = f"https://localhost:{running.port}/{running.id_scope}/registrations"

    async def device_loop(number: int, http: aiohttp.ClientSession) -> None:
        attempt = 0
        while time.monotonic() < deadline:
            rid = f"{prefix}-{number}-{attempt}"
            token = device_token(
                f"{running.id_scope}/registrations/{rid}", group_device_key(group, rid)
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
            result.peak_in_flight = max(
                result.peak_in_flight, running.devprov.registrations.in_flight
            )
            await asyncio.sleep(0.01)

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
    normal = await flood(running, group, cap, seconds, "normal")
    heavy = await flood(running, group, 10 * cap, seconds, "heavy")
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


@pytest.mark.soak
async def test_soak_ten_times_overload(tmp_path: Path, webhook: Webhook) -> None:
    cap, seconds = 50, 60.0
    normal, heavy, recovered, running = await overloaded(tmp_path, webhook, cap, seconds)
    await running.devprov.close()
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(
        f"\nSOAK overload: cap {cap} in flight, webhook {WEBHOOK_SECONDS * 1000:.0f} ms,"
        f" {seconds:.0f} s each;"
        f" normal ({cap} devices): {len(normal.admitted) / seconds:.0f}/s admitted,"
        f" p50 {normal.p(0.5) * 1000:.0f} ms, p99 {normal.p(0.99) * 1000:.0f} ms;"
        f" 10x ({10 * cap} devices, honouring Retry-After): {len(heavy.admitted) / seconds:.0f}/s"
        f" admitted, p50 {heavy.p(0.5) * 1000:.0f} ms, p99 {heavy.p(0.99) * 1000:.0f} ms,"
        f" 429 share {heavy.throttled / max(1, heavy.total):.0%}, peak in flight"
        f" {heavy.peak_in_flight}; drained {recovered * 1000:.0f} ms after the flood;"
        f" peak RSS (clients and server, one process) {peak_mb:.0f} MB"
    )
    assert heavy.other == []
    assert heavy.peak_in_flight <= cap
