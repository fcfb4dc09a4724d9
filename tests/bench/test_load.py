"""The load generator registers real devices against devprov, and the baseline answers it."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from devprov.bench.allocation import ALLOCATOR_NAME, ALLOCATOR_SPEC, group_fields
from devprov.bench.baseline import serve
from devprov.bench.fleet import Fleet
from devprov.bench.load import Target, run_scenario
from devprov.bench.runner import ScenarioResult, compare_allocations
from devprov.bench.scenarios import SCENARIOS
from devprov.bench.wire import client_context
from devprov.server.tls import server_context
from tests.conftest import Running, free_port, start_devprov
from tests.helpers import create_group


@pytest.mark.parametrize("scenario", SCENARIOS)
async def test_every_scenario_provisions_its_devices(devprov: Running, scenario: str) -> None:
    await devprov.service().link_hub("hub.example")
    group = await create_group(devprov, "bench")
    fleet = Fleet(devprov.id_scope, group["attestation"]["symmetricKey"]["primaryKey"], "b")
    instance = devprov.devprov.instance
    target = Target(
        "localhost",
        instance.https_port,
        instance.mqtt_port,
        client_context(devprov.ca),
        instance.amqp_port,
    )
    done: list[int] = []

    samples = await run_scenario(
        scenario, target, fleet, range(12), concurrency=4, progress=done.append
    )

    assert (samples.completed, dict(samples.errors), sum(done)) == (12, {}, 12)
    record = await devprov.service().get_registration(fleet.registration_id(11))
    assert record["status"] == "assigned"


async def test_open_loop_arrivals_and_the_baseline(devprov: Running) -> None:
    https_port, mqtt_port, amqp_port = free_port(), free_port(), free_port()
    tls = devprov.devprov.tls
    context = server_context(tls.cert, tls.key, devprov.devprov.store.sealer)  # the key is sealed
    server = asyncio.create_task(serve(context, "127.0.0.1", https_port, mqtt_port, amqp_port))
    await asyncio.sleep(0.2)
    try:
        target = Target("127.0.0.1", https_port, mqtt_port, client_context(devprov.ca), amqp_port)
        fleet = Fleet("0ne00000000", "c2VjcmV0LXNlY3JldC1zZWNyZXQ=", "x")
        for scenario in SCENARIOS:
            samples = await run_scenario(
                scenario, target, fleet, range(20), concurrency=2, rate=200.0
            )
            assert (samples.completed, dict(samples.errors)) == (20, {}), scenario
    finally:
        server.cancel()


@pytest.mark.parametrize("allocation", ["route", "allocator"])
async def test_each_allocation_allocates_as_it_says(
    database_url: str, tmp_path: Path, allocation: str
) -> None:
    running = await start_devprov(
        tmp_path / "data", database_url, allocators={ALLOCATOR_NAME: ALLOCATOR_SPEC}
    )
    try:
        for hub in ("bench-hub-1.example", "bench-hub-2.example"):
            await running.service().link_hub(hub)
        group = await create_group(running, f"bench-{allocation}", **group_fields(allocation, None))
        fleet = Fleet(running.id_scope, group["attestation"]["symmetricKey"]["primaryKey"], "a")
        instance = running.devprov.instance
        target = Target(
            "localhost", instance.https_port, instance.mqtt_port, client_context(running.ca)
        )
        samples = await run_scenario("https-keepalive", target, fleet, range(3), concurrency=1)
        record = await running.service().get_registration(fleet.registration_id(2))
    finally:
        await running.devprov.close()

    assert (samples.completed, dict(samples.errors)) == (3, {})
    assert record["assignedHub"] == "bench-hub-1.example"
    expected = {"ticket": "bench", "model": "dtmi:bench;1"} if allocation == "route" else None
    assert record["payload"] == (expected or {"ticket": "bench"})


def test_a_routes_cost_is_compared_with_a_hashed_registration() -> None:
    def row(allocation: str, cpu: float) -> ScenarioResult:
        return ScenarioResult(
            "s", 10, {}, 1.0, 1.0, 1.0, 1.0, cpu, None, allocation=allocation
        )  # fmt: skip

    results = [row("hashed", 0.5), row("route", 0.55), row("allocator", 0.75)]
    compare_allocations(results)

    assert results[1].cpu_vs_hashed == pytest.approx(1.1)
    assert results[2].cpu_vs_hashed == pytest.approx(1.5)
    assert results[1].route_us is not None and results[1].route_us > 0
    assert results[1].route_share == pytest.approx(results[1].route_us / 500)
    assert results[0].route_us is None
