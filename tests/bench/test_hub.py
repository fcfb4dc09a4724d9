"""The hub benchmark's devices really provision, connect to the built-in hub and send telemetry."""

from __future__ import annotations

from devprov.bench.fleet import Fleet
from devprov.bench.hub import run_hub_fleet
from devprov.bench.load import Target
from devprov.bench.wire import client_context
from devprov.store.hub_messages import read_messages
from tests.conftest import Running
from tests.helpers import create_group


async def test_a_fleet_provisions_connects_and_sends(devprov: Running) -> None:
    await devprov.service().link_hub("bench-hub.example")
    group = await create_group(devprov, "bench")
    fleet = Fleet(devprov.id_scope, group["attestation"]["symmetricKey"]["primaryKey"], "h")
    instance = devprov.devprov.instance
    target = Target(
        "localhost", instance.https_port, instance.mqtt_port, client_context(devprov.ca)
    )

    result = await run_hub_fleet(target, fleet, 6, 3, concurrency=3, rss=lambda: 0.0)

    assert (result.connected, result.messages, dict(result.errors)) == (6, 18, {})
    await devprov.devprov.hubs.log.flush()  # type: ignore[attr-defined]
    page = await read_messages(devprov.devprov.store, "bench-hub.example", limit=100)
    assert page.received == 18 and len(page.messages) == 18
