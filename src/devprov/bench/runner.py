"""Running a benchmark: devprov and the bare-TLS baseline, each scenario, the server measured.

It starts devprov (or uses a running one), sets up a fleet, plays each scenario against devprov
and then against the bare-TLS baseline, and measures the server."""

from __future__ import annotations

import asyncio
import json
import secrets
import subprocess
import sys
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from devprov.bench.allocation import (
    ALLOCATOR_NAME,
    ALLOCATOR_SPEC,
    group_fields,
    route_microseconds,
)
from devprov.bench.fleet import Fleet
from devprov.bench.hub import HubResult, run_hub_fleet
from devprov.bench.idle import IdleResult, hold_idle
from devprov.bench.load import Samples, Target, run_scenario
from devprov.bench.processes import (
    child_process,
    cpu_seconds,
    free_port,
    process_tree,
    rss_mb,
)
from devprov.bench.seed import seed
from devprov.bench.wire import client_context
from devprov.client.service import ServiceClient
from devprov.instance import ensure_instance
from devprov.process import raise_file_limit


@dataclass
class BenchConfig:
    scenarios: list[str]
    devices: int = 5000
    concurrency: int = 32
    rate: float | None = None
    workers: int = 1
    database: str | None = None
    data_dir: Path | None = None
    webhook: bool = False
    baseline: bool = True
    allocations: list[str] = field(default_factory=lambda: ["hashed"])
    seed_registrations: int = 0
    seed_enrollments: int = 0
    observability: bool = True
    """Serve as `serve` does by default (INFO log lines, metrics, console); False: WARNING
    logs, metrics off and no console, the baseline observability's cost is measured from."""
    connector: str | None = None
    connection_string: str | None = None
    connector_hub: str | None = None


@dataclass
class ScenarioResult:
    scenario: str
    completed: int
    errors: dict[str, int]
    per_second: float
    p50_ms: float
    p95_ms: float
    p99_ms: float
    server_cpu_ms_per_registration: float | None
    server_rss_mb: float | None
    baseline_per_second: float | None = None
    ratio_to_baseline: float | None = None
    baseline_errors: dict[str, int] = field(default_factory=dict)
    allocation: str = "hashed"
    cpu_vs_hashed: float | None = None  # server CPU per registration / the hashed run's
    route_us: float | None = None  # a route's own cost, measured in the generator's process
    route_share: float | None = None  # route_us / the hashed run's server CPU per registration
    connector: str | None = None  # run through a hub of this connector to its real service
    ratio_to_builtin: float | None = None  # registrations/s / the built-in hub's, same scenario


@contextmanager
def devprov_server(config: BenchConfig) -> Iterator[tuple[dict[str, Any], int | None]]:
    """A running devprov: the one in --data-dir, or one started here. Yields its `info` and
    the pid to measure (None when it was not started here)."""
    python = sys.executable
    if config.data_dir is not None:
        info = subprocess.run(
            [python, "-m", "devprov.cli", "info", "--data-dir", str(config.data_dir), "--json"],
            capture_output=True, text=True, check=True,
        )  # fmt: skip
        yield json.loads(info.stdout), None
        return
    with tempfile.TemporaryDirectory(prefix="devprov-bench-") as scratch:
        data_dir, https_port = Path(scratch) / "data", free_port()
        if config.seed_registrations or config.seed_enrollments:
            instance = ensure_instance(data_dir, database=config.database)
            seed(
                instance.database,
                config.seed_registrations,
                config.seed_enrollments,
                lambda _name, _count: None,
            )
        arguments = [
            python, "-m", "devprov.cli", "serve", "--data-dir", str(data_dir),
            "--host", "127.0.0.1", "--https-port", str(https_port),
            "--mqtt-port", str(free_port()), "--amqp-port", str(free_port()),
            "--workers", str(config.workers),
            "--log-level", "WARNING",
        ]  # fmt: skip
        if config.observability:
            arguments += ["--log-level", "INFO", "--metrics", "loopback", "--console"]
        else:
            arguments += ["--log-level", "WARNING", "--metrics", "off", "--no-console"]
        if config.database:
            arguments += ["--db", config.database]
        if "allocator" in config.allocations:
            arguments += ["--allocator", f"{ALLOCATOR_NAME}={ALLOCATOR_SPEC}"]
        with child_process(arguments, https_port) as process:
            info = subprocess.run(
                [python, "-m", "devprov.cli", "info", "--data-dir", str(data_dir), "--json"],
                capture_output=True, text=True, check=True,
            )  # fmt: skip
            details = json.loads(info.stdout)
            details["tls"] = str(data_dir / "tls")
            yield details, process.pid


def connector_hub_name(connection_string: str) -> str:
    """The hub a connection string names: its HostName's host (azure-iothub) or its URL's."""
    fields = dict(part.split("=", 1) for part in connection_string.split(";") if "=" in part)
    if "HostName" in fields:
        return fields["HostName"].rsplit(":", 1)[0]
    url = fields.get("Url", connection_string)
    return urlsplit(url).hostname or "bench-connector.example"


async def _connector_fleet(info: dict[str, Any], config: BenchConfig) -> Fleet:
    """A group whose devices all go to the hub linked with `config.connector`."""
    service = ServiceClient(info["serviceConnectionString"], ca_file=info["caCertificatePath"])
    hub = config.connector_hub or connector_hub_name(config.connection_string or "")
    await service.link_hub(
        hub, connector=config.connector, connectionString=config.connection_string
    )
    group_id = f"bench-{config.connector}-{secrets.token_hex(4)}"
    created = await service.put_group(
        {"enrollmentGroupId": group_id, "attestation": {"type": "symmetricKey"},
         "allocationPolicy": "static", "iotHubs": [hub]}
    )  # fmt: skip
    return Fleet(info["idScope"], created["attestation"]["symmetricKey"]["primaryKey"], group_id)


async def _prepare_fleet(
    info: dict[str, Any], webhook_url: str | None, allocation: str = "hashed"
) -> Fleet:
    """Two linked hubs and an enrollment group that allocates as `allocation` says."""
    service = ServiceClient(info["serviceConnectionString"], ca_file=info["caCertificatePath"])
    await service.link_hub("bench-hub-1.example")
    await service.link_hub("bench-hub-2.example", allocationWeight=2)
    group_id = f"bench-{secrets.token_hex(4)}"
    group: dict[str, Any] = {"enrollmentGroupId": group_id, "attestation": {"type": "symmetricKey"}}
    group.update(group_fields("webhook" if webhook_url else allocation, webhook_url))
    created = await service.put_group(group)
    return Fleet(info["idScope"], created["attestation"]["symmetricKey"]["primaryKey"], group_id)


def run_benchmark(
    config: BenchConfig, progress: Callable[[str, int], Callable[[int], None]]
) -> list[ScenarioResult]:
    """Every scenario against devprov, once per allocation (same server, one after the other),
    then (optionally) against the baseline."""
    results: list[ScenarioResult] = []
    allocations = list(config.allocations)
    if config.webhook and "webhook" not in allocations:
        allocations = ["webhook"] if allocations == ["hashed"] else [*allocations, "webhook"]
    with devprov_server(config) as (info, pid):
        webhook_port = free_port()
        command = [sys.executable, "-m", "devprov.bench.webhook", "--port", str(webhook_port)]
        webhook = child_process(command, webhook_port) if "webhook" in allocations else None
        with webhook or _nothing():
            url = f"http://127.0.0.1:{webhook_port}/allocate"
            fleets = {
                allocation: asyncio.run(
                    _prepare_fleet(info, url if allocation == "webhook" else None, allocation)
                )
                for allocation in allocations
            }
            # With --connector, each scenario also runs through a hub of that connector to its
            # real service (static allocation), after the built-in hubs: the same run, so the
            # ratio holds.
            if config.connector:
                fleets["connector"] = asyncio.run(_connector_fleet(info, config))
            context = client_context(info["caCertificatePath"])
            target = Target(
                "127.0.0.1", info["httpsPort"], info["mqttPort"], context, info["amqpPort"]
            )
            for scenario in config.scenarios:
                for allocation, fleet in fleets.items():
                    through = config.connector if allocation == "connector" else None
                    name = scenario if len(fleets) == 1 else f"{scenario} [{allocation}]"
                    name = f"{scenario} via {through}" if through else name
                    pids = process_tree(pid) if pid else []
                    before = cpu_seconds(pids)
                    scenario_fleet = Fleet(
                        fleet.id_scope, fleet.group_key, f"{fleet.prefix}-{scenario}"
                    )
                    samples = asyncio.run(
                        run_scenario(
                            scenario, target, scenario_fleet, range(config.devices),
                            concurrency=config.concurrency, rate=config.rate,
                            progress=progress(name, config.devices),
                        )
                    )  # fmt: skip
                    cpu = cpu_seconds(pids) - before if pids else None
                    result = _result(scenario, samples, cpu, rss_mb(pids) if pids else None)
                    result.allocation = "static" if through else allocation
                    if through:
                        builtin = next(r for r in results if r.scenario == scenario)
                        result.connector = through
                        result.ratio_to_builtin = (
                            result.per_second / builtin.per_second if builtin.per_second else None
                        )
                    results.append(result)
        if config.baseline and "tls" in info:
            _run_baseline(config, info, next(iter(fleets.values())), results, progress)
    compare_allocations(results)
    return results


def compare_allocations(results: list[ScenarioResult]) -> None:
    """Each allocation's server CPU per registration against hashed in the same scenario, and
    what one payload route costs as a share of a hashed registration."""
    hashed = {r.scenario: r for r in results if r.allocation == "hashed"}
    route_us = route_microseconds() if any(r.allocation == "route" for r in results) else None
    for result in results:
        base = hashed.get(result.scenario)
        base_cpu = base.server_cpu_ms_per_registration if base else None
        cpu = result.server_cpu_ms_per_registration
        if base_cpu and cpu and result.allocation != "hashed":
            result.cpu_vs_hashed = cpu / base_cpu
        if result.allocation == "route" and route_us is not None:
            result.route_us = route_us
            if base_cpu:
                result.route_share = route_us / (base_cpu * 1000)


@contextmanager
def _nothing() -> Iterator[None]:
    yield


def _run_baseline(
    config: BenchConfig,
    info: dict[str, Any],
    fleet: Fleet,
    results: list[ScenarioResult],
    progress: Callable[[str, int], Callable[[int], None]],
) -> None:
    https_port, mqtt_port, amqp_port = free_port(), free_port(), free_port()
    tls = Path(info["tls"])
    arguments = [
        sys.executable, "-m", "devprov.bench.baseline", "--cert", str(tls / "server.pem"),
        "--key", str(tls / "server-key.pem"), "--https-port", str(https_port),
        "--mqtt-port", str(mqtt_port), "--amqp-port", str(amqp_port),
    ]  # fmt: skip
    with child_process(arguments, https_port):
        target = Target(
            "127.0.0.1",
            https_port,
            mqtt_port,
            client_context(info["caCertificatePath"]),
            amqp_port,
        )
        for scenario in dict.fromkeys(result.scenario for result in results):
            samples = asyncio.run(
                run_scenario(
                    scenario, target, fleet, range(config.devices),
                    concurrency=config.concurrency, rate=config.rate,
                    progress=progress(f"baseline {scenario}", config.devices),
                )
            )  # fmt: skip
            for result in results:
                if result.scenario != scenario:
                    continue
                result.baseline_per_second = samples.completed / samples.elapsed
                result.ratio_to_baseline = result.per_second / result.baseline_per_second
                result.baseline_errors = dict(samples.errors)


def _result(
    scenario: str, samples: Samples, cpu: float | None, rss: float | None
) -> ScenarioResult:
    completed = samples.completed
    return ScenarioResult(
        scenario=scenario,
        completed=completed,
        errors=dict(samples.errors),
        per_second=completed / samples.elapsed if samples.elapsed else 0.0,
        p50_ms=samples.percentile(0.50) * 1000,
        p95_ms=samples.percentile(0.95) * 1000,
        p99_ms=samples.percentile(0.99) * 1000,
        server_cpu_ms_per_registration=cpu * 1000 / completed if cpu and completed else None,
        server_rss_mb=rss,
    )


def as_json(results: list[ScenarioResult]) -> str:
    return json.dumps([asdict(result) for result in results], indent=2)


def run_idle(config: BenchConfig, connections: int) -> IdleResult:
    """Hold `connections` idle MQTT devices on a devprov started here; its memory per device."""
    raise_file_limit()
    with devprov_server(config) as (info, pid):
        assert pid is not None, "bench-idle measures a devprov it starts itself"
        fleet = asyncio.run(_prepare_fleet(info, None))
        target = Target(
            "127.0.0.1",
            info["httpsPort"],
            info["mqttPort"],
            client_context(info["caCertificatePath"]),
        )
        pids = process_tree(pid)

        async def measure() -> IdleResult:
            await asyncio.sleep(11)  # let the server's periodic trim run once first
            before = rss_mb(pids)
            clients = await hold_idle(target, fleet, connections)
            after = rss_mb(pids)
            for client in clients:
                client.writer.close()
            return IdleResult(len(clients), connections - len(clients), before, after)

        return asyncio.run(measure())


def run_hub(config: BenchConfig, messages: int) -> tuple[ScenarioResult, HubResult]:
    """Provision-then-connect `config.devices` to the built-in hub and send `messages` each,
    beside plain registrations with a new TLS connection per device measured in the same run."""
    raise_file_limit()
    with devprov_server(config) as (info, pid):
        assert pid is not None, "bench-hub measures a devprov it starts itself"
        fleet = asyncio.run(_prepare_fleet(info, None))
        target = Target(
            "127.0.0.1",
            info["httpsPort"],
            info["mqttPort"],
            client_context(info["caCertificatePath"]),
        )
        pids = process_tree(pid)
        plain_fleet = Fleet(fleet.id_scope, fleet.group_key, f"{fleet.prefix}-plain")
        before = cpu_seconds(pids)
        samples = asyncio.run(
            run_scenario(
                "https-new-tls", target, plain_fleet, range(config.devices),
                concurrency=config.concurrency,
            )
        )  # fmt: skip
        plain = _result("https-new-tls", samples, cpu_seconds(pids) - before, rss_mb(pids))
        hub = asyncio.run(
            run_hub_fleet(
                target, fleet, config.devices, messages, concurrency=config.concurrency,
                rss=lambda: rss_mb(pids),
            )
        )  # fmt: skip
        return plain, hub
