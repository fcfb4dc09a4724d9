"""Crash safety: `devprov serve` killed with SIGKILL again and again while devices register over
HTTPS and MQTT (some through a slow webhook, so they poll); after every kill the store holds
each device told `assigned` where its record says, and after the last restart nothing is left
unfinished: no claim, no operation `assigning`, no identity without its record.

`make test` runs 10 cycles per database; `make soak` (DEVPROV_SOAK=1) runs 50 per database.
The figures go to RELIABILITY.md ("Crash safety").
"""

from __future__ import annotations

import asyncio
import json
import os
import random
import signal
import socket
import ssl
import subprocess
import sys
import time
from collections import Counter
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from aiohttp import web

from devprov.bench.crash import Outcomes, drive
from devprov.bench.fleet import Fleet
from devprov.bench.load import Target
from devprov.client.service import ServiceClient
from devprov.store.connections import normalize_url
from tests.conftest import free_port

DEADLINE = 3.0  # --registration-deadline: claims last twice this, the sweep runs every 0.75 s
SETTLED_WITHIN = 4 * DEADLINE + 20.0  # claims expired, and sweeps after them (a loaded machine)
HUBS = ["hub-a.example", "hub-b.example"]


class Server:
    """`devprov serve` in a process of its own, started and killed at will."""

    def __init__(self, data_dir: Path, database_url: str) -> None:
        self.https, self.mqtt = free_port(), free_port()
        self.command = [
            sys.executable, "-m", "devprov.cli", "serve", "--data-dir", str(data_dir),
            "--host", "127.0.0.1", "--https-port", str(self.https), "--mqtt-port",
            str(self.mqtt), "--amqp-port", str(free_port()), "--db", database_url,
            "--registration-deadline", str(DEADLINE), "--webhook-timeout", "2",
            "--log-level", "ERROR",
        ]  # fmt: skip
        self.process: subprocess.Popen[bytes] | None = None
        self.log = data_dir.parent / "server.log"

    def launch(self) -> subprocess.Popen[bytes]:
        with open(self.log, "ab") as log:
            self.process = subprocess.Popen(self.command, stdout=log, stderr=log)
        return self.process

    async def start(self) -> None:
        self.process = self.launch()
        deadline = time.monotonic() + 60
        for port in (self.https, self.mqtt):
            while not _accepts(port):
                assert self.process.poll() is None, self.log.read_text()[-3000:]
                assert time.monotonic() < deadline, "devprov did not start in 60 s"
                await asyncio.sleep(0.05)

    def kill(self) -> None:
        assert self.process is not None
        self.process.send_signal(signal.SIGKILL)
        self.process.wait()

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            self.process.wait(timeout=30)


def _accepts(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.2):
            return True
    except OSError:
        return False


@pytest.fixture
async def slow_webhook() -> AsyncIterator[str]:
    """A webhook that takes up to 2.5 s (past the 1.5 s fast path: devices poll) and picks a
    hub at random."""

    async def allocate(request: web.Request) -> web.Response:
        body = await request.json()
        await asyncio.sleep(random.uniform(0.0, 2.5))
        return web.json_response({"iotHubHostName": random.choice(body["linkedHubs"])})

    app = web.Application()
    app.router.add_post("/", allocate)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    yield f"http://127.0.0.1:{site._server.sockets[0].getsockname()[1]}/"  # type: ignore[union-attr]
    await runner.cleanup()


@dataclass
class Report:
    cycles: int = 0
    attempts: int = 0
    told_assigned: int = 0
    records: int = 0
    orphans_answered: int = 0
    errors: Counter[str] = field(default_factory=Counter)
    seconds: float = 0.0


async def kill_cycles(tmp_path: Path, database_url: str, webhook: str, cycles: int) -> Report:
    report, started = Report(), time.monotonic()
    server = Server(tmp_path / "data", database_url)
    try:
        await server.start()
        info = devprov_info(tmp_path / "data")
        fleets = await enrollments(info, webhook)
        context = ssl.create_default_context(cafile=info["caCertificatePath"])
        target = Target("127.0.0.1", server.https, server.mqtt, context)
        outcomes = Outcomes()
        for cycle in range(cycles):
            if cycle:
                await server.start()
            stop = asyncio.Event()
            load = asyncio.create_task(drive(fleets, target, stop, outcomes, devices=16))
            await asyncio.sleep(random.uniform(1.0, 3.0))  # slow ones poll by 1.5 s
            server.kill()
            stop.set()
            await load
            check(database_url, outcomes.assigned, settled=False)
        orphans = assigning(database_url)
        await server.start()  # the last restart: what it finds unfinished, it settles
        await settled(database_url)
        try:
            report.records = check(database_url, outcomes.assigned, settled=True)
        except AssertionError as failure:
            state, log = state_of(database_url, str(failure)), server.log.read_text()[-4000:]
            raise AssertionError(f"{failure}\n{state}\nserver log:\n{log}") from None
        report.orphans_answered = len(orphans)
        if orphans:  # a device polling an orphaned operation is answered
            operation_id, registration_id = orphans[0]
            fleet = next(f for f in fleets if registration_id.startswith(f.prefix + "-"))
            assert await poll(target, fleet, registration_id, operation_id) != "assigning"
    finally:
        server.stop()
    report.cycles, report.attempts = cycles, outcomes.attempts
    report.told_assigned, report.errors = len(outcomes.assigned), outcomes.errors
    report.seconds = time.monotonic() - started
    return report


def devprov_info(data_dir: Path) -> dict[str, Any]:
    command = [sys.executable, "-m", "devprov.cli", "info", "--data-dir", str(data_dir), "--json"]
    info: dict[str, Any] = json.loads(
        subprocess.run(command, capture_output=True, text=True, check=True).stdout
    )
    return info


async def enrollments(info: dict[str, Any], webhook: str) -> list[Fleet]:
    """Two built-in hubs; a group spread over them by devprov, and one a slow webhook picks
    for (its devices poll, and move between hubs when they register again)."""
    service = ServiceClient(info["serviceConnectionString"], ca_file=info["caCertificatePath"])
    for hub in HUBS:
        await service.link_hub(hub)
    fleets = []
    for name, fields in (
        ("fast", {}),
        (
            "slow",
            {
                "allocationPolicy": "custom",
                "customAllocationDefinition": {"webhookUrl": webhook, "apiVersion": "2021-10-01"},
            },
        ),
    ):
        group = await service.put_group(
            {"enrollmentGroupId": name, "attestation": {"type": "symmetricKey"}, **fields}
        )
        key = group["attestation"]["symmetricKey"]["primaryKey"]
        fleets.append(Fleet(info["idScope"], key, name))
    return fleets


async def poll(target: Target, fleet: Fleet, registration_id: str, operation_id: str) -> str:
    from devprov.bench.load import Connection
    from devprov.bench.wire import http_request

    connection = Connection(target)
    try:
        reader, writer = await connection.open()
        path = fleet.register_path(registration_id).replace(
            "/register?", f"/operations/{operation_id}?"
        )
        headers = {"Host": "127.0.0.1", "Authorization": fleet.token(registration_id)}
        status, _, body = await http_request(reader, writer, "GET", path, headers)
    finally:
        connection.close()
    assert status == 200, body
    return str(json.loads(body)["status"])


async def settled(database_url: str) -> None:
    """Wait (at most SETTLED_WITHIN s) until no claim is left and no operation `assigning`."""
    deadline = time.monotonic() + SETTLED_WITHIN
    while time.monotonic() < deadline:
        engine = _engine(database_url)
        with engine.connect() as connection:
            left = connection.execute(
                sa.text(
                    "SELECT (SELECT count(*) FROM registration_claims)"
                    " + (SELECT count(*) FROM operations WHERE status = 'assigning')"
                )
            ).scalar_one()
        engine.dispose()
        if not left:
            return
        await asyncio.sleep(0.5)


def state_of(database_url: str, failure: str) -> str:
    """What the store holds about the device a failed check names, to say why."""
    device = failure.split()[0].lower()
    engine = _engine(database_url)
    with engine.connect() as connection:
        rows = [
            f"{table}: {connection.execute(sa.text(query), {'d': device}).all()}"
            for table, query in (
                ("claims", "SELECT * FROM registration_claims WHERE device_key = :d"),
                ("record", "SELECT key, hub_key, device_key, operation_id, document"
                 " FROM registrations WHERE device_key = :d OR key = :d"),
                ("identities", "SELECT key, etag FROM hub_devices WHERE key LIKE '%/' || :d"),
                ("operations", "SELECT key, status, updated_at FROM operations"
                 " WHERE registration_key = :d"),
            )
        ]  # fmt: skip
    engine.dispose()
    return "\n".join(rows)


def _engine(database_url: str) -> sa.Engine:
    return sa.create_engine(normalize_url(database_url), poolclass=sa.pool.NullPool)


def assigning(database_url: str) -> list[tuple[str, str]]:
    engine = _engine(database_url)
    with engine.connect() as connection:
        rows = connection.execute(
            sa.text("SELECT key, registration_key FROM operations WHERE status = 'assigning'")
        ).all()
    engine.dispose()
    return [(row.key, row.registration_key) for row in rows]


def check(database_url: str, told: dict[str, str], *, settled: bool) -> int:
    """The invariants, read straight from the database of a killed (or settled) devprov;
    answers how many registration records there are."""
    engine = _engine(database_url)
    with engine.begin() as connection:
        integrity(connection)
        records = {
            row.key: (row.hub_key, row.device_key)
            for row in connection.execute(
                sa.text("SELECT key, hub_key, device_key FROM registrations")
            )
        }
        keys = connection.execute(sa.text("SELECT key FROM hub_devices")).scalars().all()
        placed = {tuple(key.split("/", 1)) for key in keys}
        identities = Counter(device for _, device in placed)
        claimed = {
            device
            for (device,) in connection.execute(
                sa.text("SELECT device_key FROM registration_claims")
            )
        }
        operations = connection.execute(
            sa.text("SELECT count(*) FROM operations WHERE status = 'assigning'")
        ).scalar_one()
    engine.dispose()
    for registration_id in told:
        key = registration_id.lower()
        assert key in records, f"{registration_id} was told assigned but has no record"
        hub, device = records[key]
        assert hub and device, f"{registration_id}'s record names no hub: {records[key]}"
        assert (hub, device) in placed, f"{registration_id} is not on {hub}, its record's hub"
        if settled or device not in claimed:
            assert identities[device] == 1, f"{device} is on {identities[device]} hubs"
    if settled:
        assert not claimed, f"claims left after the restart: {sorted(claimed)[:5]}"
        assert operations == 0, f"{operations} operations still assigning after the restart"
        named = {(hub, device) for hub, device in records.values() if hub}
        assert placed == named, f"identities without a record: {sorted(placed - named)[:5]}"
    return len(records)


def integrity(connection: sa.Connection) -> None:
    """SQLite's own check; on PostgreSQL, amcheck over every B-tree index of the database."""
    if connection.dialect.name == "sqlite":
        assert connection.execute(sa.text("PRAGMA integrity_check")).scalar_one() == "ok"
        return
    connection.execute(sa.text("CREATE EXTENSION IF NOT EXISTS amcheck"))
    indexes = connection.execute(
        sa.text(
            "SELECT c.oid FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid"
            " JOIN pg_am a ON a.oid = c.relam JOIN pg_namespace n ON n.oid = c.relnamespace"
            " WHERE a.amname = 'btree' AND n.nspname = 'public'"
        )
    ).scalars()
    for oid in indexes:
        connection.execute(sa.text("SELECT bt_index_check(:oid, true)"), {"oid": oid})


def _print(database_url: str, report: Report) -> None:
    kind = database_url.split(":", 1)[0]
    print(
        f"\ncrash safety ({kind}): {report.cycles} kill -9 cycles in {report.seconds:.0f} s,"
        f" {report.attempts} registrations attempted, {report.told_assigned} devices told"
        f" assigned, {report.records} records, {report.orphans_answered} orphaned operations"
        f" answered after the last restart, failures in flight: {dict(report.errors)}; nothing"
        " lost"
    )


async def test_kill_minus_nine_under_load_loses_nothing(
    tmp_path: Path, database_url: str, slow_webhook: str
) -> None:
    report = await kill_cycles(
        tmp_path, database_url, slow_webhook, cycles=int(os.environ.get("CYC", "10"))
    )
    _print(database_url, report)
    assert report.told_assigned > 0


@pytest.mark.soak
async def test_kill_minus_nine_soak(tmp_path: Path, database_url: str, slow_webhook: str) -> None:
    if os.environ.get("DEVPROV_SOAK") != "1":
        pytest.skip("the long version: make soak (DEVPROV_SOAK=1)")
    cycles = int(os.environ.get("DEVPROV_CRASH_CYCLES", "50"))
    report = await kill_cycles(tmp_path, database_url, slow_webhook, cycles=cycles)
    _print(database_url, report)
    assert report.told_assigned > 0
