"""`devprov bench-slowloris`'s attacks against a devprov in this process: every slow or idle
peer is closed by its deadline and a fresh client still gets in. The soak version runs the
figures RELIABILITY.md records (1,000 tricklers, 5,000 idle connections, 200 MQTT tricklers,
with the default deadlines)."""

from __future__ import annotations

import os
import resource
from pathlib import Path

import pytest

from devprov.bench.load import Target
from devprov.bench.slowloris import ATTACKS, Attack, slowloris
from devprov.bench.wire import client_context
from devprov.process import raise_file_limit
from tests.conftest import Running, start_devprov


def target_of(running: Running) -> Target:
    instance = running.devprov.instance
    return Target("127.0.0.1", running.port, instance.mqtt_port, client_context(running.ca))


@pytest.mark.parametrize("attack", ATTACKS)
async def test_every_slow_peer_is_closed_and_a_fresh_client_gets_in(
    tmp_path: Path, attack: Attack
) -> None:
    running = await start_devprov(
        tmp_path / "data",
        f"sqlite:///{tmp_path / 'devprov.db'}",
        http_header_timeout=0.5,
        http_body_timeout=0.5,
        http_keepalive_timeout=0.5,
        mqtt_connect_timeout=0.5,
    )
    try:
        result = await slowloris(target_of(running), attack, 20, seconds=4.0, gap=0.1)
    finally:
        await running.devprov.close()
    assert result.failures == []
    assert (result.opened, result.closed_by_server) == (20, 20)
    assert result.probe_ok


SOAK = [("https-head", 1000, 100.0), ("https-body", 1000, 100.0), ("https-idle", 5000, 100.0),
        ("mqtt-connect", 200, 75.0)]  # fmt: skip


@pytest.mark.soak
@pytest.mark.parametrize(("attack", "peers", "seconds"), SOAK)
async def test_soak_slow_peers_with_the_default_deadlines(
    tmp_path: Path, attack: Attack, peers: int, seconds: float
) -> None:
    raise_file_limit()
    running = await start_devprov(tmp_path / "data", f"sqlite:///{tmp_path / 'devprov.db'}")
    try:
        result = await slowloris(target_of(running), attack, peers, seconds=seconds, gap=1.0)
    finally:
        await running.devprov.close()
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(
        f"\nSOAK slowloris {attack}: {peers} peers, {result.opened} opened,"
        f" {result.closed_by_server} closed by the server, {result.held} held after"
        f" {result.seconds:.0f} s; fresh client {'answered' if result.probe_ok else 'NOT'};"
        f" peak RSS (clients and server, one process) {peak_mb:.0f} MB; pid {os.getpid()}"
    )
    assert result.closed_by_server == result.opened
    assert result.probe_ok
