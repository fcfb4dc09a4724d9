"""The load generator registers real devices against devprov, and the baseline answers it."""

from __future__ import annotations

import asyncio

import pytest

from devprov.bench.baseline import serve
from devprov.bench.fleet import Fleet
from devprov.bench.load import Target, run_scenario
from devprov.bench.scenarios import SCENARIOS
from devprov.bench.wire import client_context
from devprov.server.tls import server_context
from tests.conftest import Running, free_port
from tests.helpers import create_group


@pytest.mark.parametrize("scenario", SCENARIOS)
async def test_every_scenario_provisions_its_devices(devprov: Running, scenario: str) -> None:
    await devprov.service().link_hub("hub.example")
    group = await create_group(devprov, "bench")
    fleet = Fleet(devprov.id_scope, group["attestation"]["symmetricKey"]["primaryKey"], "b")
    instance = devprov.devprov.instance
    target = Target(
        "localhost", instance.https_port, instance.mqtt_port, client_context(devprov.ca)
    )
    done: list[int] = []

    samples = await run_scenario(
        scenario, target, fleet, range(12), concurrency=4, progress=done.append
    )

    assert (samples.completed, dict(samples.errors), sum(done)) == (12, {}, 12)
    record = await devprov.service().get_registration(fleet.registration_id(11))
    assert record["status"] == "assigned"


async def test_open_loop_arrivals_and_the_baseline(devprov: Running) -> None:
    https_port, mqtt_port = free_port(), free_port()
    tls = devprov.devprov.tls
    server = asyncio.create_task(
        serve(server_context(tls.cert, tls.key), "127.0.0.1", https_port, mqtt_port)
    )
    await asyncio.sleep(0.2)
    try:
        target = Target("127.0.0.1", https_port, mqtt_port, client_context(devprov.ca))
        fleet = Fleet("0ne00000000", "c2VjcmV0LXNlY3JldC1zZWNyZXQ=", "x")
        for scenario in SCENARIOS:
            samples = await run_scenario(
                scenario, target, fleet, range(20), concurrency=2, rate=200.0
            )
            assert (samples.completed, dict(samples.errors)) == (20, {}), scenario
    finally:
        server.cancel()
