"""`devprov bench`: play a fleet against devprov and a bare-TLS baseline; print the figures.

The load generator is imported when a bench command runs, not with the CLI: `devprov --help`
and every other command would otherwise pay for it.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from devprov.bench.scenarios import ALLOCATIONS, SCENARIOS
from devprov.cli.common import (
    DEFAULT_DATA_DIR,
    DataDir,
    JsonFlag,
    console,
    err_console,
    instance_of,
)

if TYPE_CHECKING:
    from rich.table import Table

    from devprov.bench.runner import ScenarioResult


def bench(
    scenario: Annotated[
        list[str] | None,
        typer.Option(help=f"Scenario to run (repeat); default all: {', '.join(SCENARIOS)}."),
    ] = None,
    devices: Annotated[int, typer.Option(help="Devices registered per scenario.")] = 5000,
    concurrency: Annotated[int, typer.Option(help="Devices registering at once.")] = 32,
    rate: Annotated[
        float | None, typer.Option(help="Open loop: devices arrive at this rate per second.")
    ] = None,
    workers: Annotated[int, typer.Option(help="`serve --workers` for the devprov started.")] = 1,
    db: Annotated[str | None, typer.Option(help="Database URL for the devprov started.")] = None,
    data_dir: Annotated[
        Path | None, typer.Option(help="Use the devprov of this data dir instead of starting one.")
    ] = None,
    webhook: Annotated[
        bool, typer.Option(help="Allocate through a custom webhook (--allocation webhook).")
    ] = False,
    allocation: Annotated[
        list[str] | None,
        typer.Option(
            help="How devices are allocated; repeat to compare in one run: "
            + ", ".join(ALLOCATIONS)
        ),
    ] = None,
    baseline: Annotated[bool, typer.Option(help="Also measure the bare-TLS baseline.")] = True,
    seed_registrations: Annotated[
        int, typer.Option(help="Registration records put in the store first (bulk).")
    ] = 0,
    seed_enrollments: Annotated[
        int, typer.Option(help="Individual enrollments put in the store first (bulk).")
    ] = 0,
    observability: Annotated[
        bool,
        typer.Option(
            help="Serve with INFO log lines, metrics and the console (as `serve` does);"
            " --no-observability: WARNING logs, no metrics, no console, to measure their cost."
        ),
    ] = True,
    connector: Annotated[
        str | None,
        typer.Option(
            help="Also run each scenario through a hub of this connector (azure-iothub,"
            " mosquitto, http) to its real service, beside the built-in hub."
        ),
    ] = None,
    connection_string: Annotated[
        str | None, typer.Option(help="The --connector hub's connection string.")
    ] = None,
    hub: Annotated[
        str | None,
        typer.Option(help="The --connector hub's name (default: the connection string's host)."),
    ] = None,
    as_json_output: JsonFlag = False,
) -> None:
    """Provision a fleet of virtual devices and report rate, latency and server CPU."""
    from devprov.bench.runner import BenchConfig, as_json, run_benchmark

    if (connector is None) != (connection_string is None):
        raise typer.BadParameter("--connector and --connection-string go together")
    unknown = set(scenario or []) - set(SCENARIOS)
    if unknown:
        raise typer.BadParameter(f"unknown scenarios {sorted(unknown)}; choose from {SCENARIOS}")
    strange = set(allocation or []) - set(ALLOCATIONS)
    if strange:
        raise typer.BadParameter(f"unknown allocations {sorted(strange)}; choose {ALLOCATIONS}")
    config = BenchConfig(
        scenarios=list(scenario or SCENARIOS),
        devices=devices,
        concurrency=concurrency,
        rate=rate,
        workers=workers,
        database=db,
        data_dir=data_dir,
        webhook=webhook,
        allocations=list(dict.fromkeys(allocation or ["hashed"])),
        baseline=baseline,
        seed_registrations=seed_registrations,
        seed_enrollments=seed_enrollments,
        observability=observability,
        connector=connector,
        connection_string=connection_string,
        connector_hub=hub,
    )
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeElapsedColumn,
    )

    with Progress(
        TextColumn("{task.description:<30}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=err_console,
        transient=as_json_output,
    ) as progress:

        def tracker(name: str, total: int) -> Callable[[int], None]:
            task = progress.add_task(name, total=total)
            return lambda done: progress.advance(task, done)

        results = run_benchmark(config, tracker)
    if as_json_output:
        print(as_json(results))
        return
    console.print(_table(results))
    for result in results:
        if result.route_us is not None:
            share = "-" if result.route_share is None else f"{result.route_share:.1%}"
            console.print(
                f"{result.scenario}: a payload route costs {result.route_us:.1f} µs of CPU,"
                f" {share} of a hashed registration's server CPU"
            )


def _table(results: list[ScenarioResult]) -> Table:
    from rich.table import Table

    table = Table(title="devprov bench")
    for column in (
        "scenario", "allocation", "registrations/s", "p50 ms", "p95 ms", "p99 ms", "errors",
        "server CPU ms/reg", "vs hashed", "server RSS MB", "baseline/s", "ratio", "vs built-in",
    ):  # fmt: skip
        table.add_column(column, justify="left" if column == "scenario" else "right")
    for result in results:
        table.add_row(
            result.scenario + (f" via {result.connector}" if result.connector else ""),
            result.allocation,
            f"{result.per_second:.0f}",
            f"{result.p50_ms:.1f}",
            f"{result.p95_ms:.1f}",
            f"{result.p99_ms:.1f}",
            str(sum(result.errors.values())),
            _maybe(result.server_cpu_ms_per_registration, "{:.2f}"),
            _maybe(result.cpu_vs_hashed, "{:.2f}"),
            _maybe(result.server_rss_mb, "{:.0f}"),
            _maybe(result.baseline_per_second, "{:.0f}"),
            _maybe(result.ratio_to_baseline, "{:.2f}"),
            _maybe(result.ratio_to_builtin, "{:.2f}"),
        )
    return table


def _maybe(value: float | None, form: str) -> str:
    return "-" if value is None else form.format(value)


def bench_seed(
    data_dir: DataDir = DEFAULT_DATA_DIR,
    registrations: Annotated[int, typer.Option(help="Registration records to add.")] = 1_000_000,
    enrollments: Annotated[int, typer.Option(help="Individual enrollments to add.")] = 100_000,
) -> None:
    """Fill the store of a data dir with records, to benchmark devprov with a large store."""
    from devprov.bench.seed import seed

    database = instance_of(data_dir).database
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeElapsedColumn,
    )

    with Progress(
        TextColumn("{task.description:<16}"), BarColumn(), MofNCompleteColumn(),
        TimeElapsedColumn(), console=err_console,
    ) as progress:  # fmt: skip
        tasks = {
            "enrollments": progress.add_task("enrollments", total=enrollments),
            "registrations": progress.add_task("registrations", total=registrations),
        }
        seed(database, registrations, enrollments, lambda name, n: progress.advance(tasks[name], n))


def bench_idle(
    connections: Annotated[int, typer.Option(help="Idle MQTT devices to hold.")] = 5000,
    db: Annotated[str | None, typer.Option(help="Database URL for the devprov started.")] = None,
) -> None:
    """Memory an idle MQTT device costs the server (TLS, CONNECT and SUBSCRIBE, then nothing)."""
    from devprov.bench.runner import BenchConfig, run_idle

    result = run_idle(BenchConfig(scenarios=[], database=db), connections)
    console.print(
        f"{result.connections} idle MQTT connections ({result.failed} failed): server RSS"
        f" {result.rss_before_mb:.0f} MB -> {result.rss_after_mb:.0f} MB,"
        f" {result.kb_per_connection:.1f} KB a connection"
    )


def bench_hub(
    devices: Annotated[int, typer.Option(help="Devices provisioned and connected.")] = 1000,
    messages: Annotated[int, typer.Option(help="Telemetry messages each device sends.")] = 20,
    concurrency: Annotated[int, typer.Option(help="Devices connecting at once.")] = 32,
    db: Annotated[str | None, typer.Option(help="Database URL for the devprov started.")] = None,
    as_json_output: JsonFlag = False,
) -> None:
    """A fleet's first minute on the built-in hub: provision then connect (new TLS each),
    telemetry at QoS 1 from every connected device, and memory per connected device; beside
    plain registrations with a new TLS connection per device, in the same run."""
    from devprov.bench.runner import BenchConfig, run_hub

    config = BenchConfig(scenarios=[], devices=devices, concurrency=concurrency, database=db)
    plain, hub = run_hub(config, messages)
    figures = {
        "devices": hub.devices,
        "connected": hub.connected,
        "provisionedAndConnectedPerSecond": round(hub.provisioned_and_connected_per_second, 1),
        "plainRegistrationsPerSecond": round(plain.per_second, 1),
        "ratioToPlainRegistration": round(
            hub.provisioned_and_connected_per_second / plain.per_second, 2
        )
        if plain.per_second
        else None,
        "messages": hub.messages,
        "messagesPerSecond": round(hub.messages_per_second, 1),
        "kbPerConnectedDevice": round(hub.kb_per_connected_device, 1),
        "errors": dict(hub.errors) | dict(plain.errors),
    }
    if as_json_output:
        print(json.dumps(figures, indent=2))
        return
    for name, value in figures.items():
        console.print(f"{name}: {value}")


def bench_slowloris(
    attack: Annotated[
        list[str] | None,
        typer.Option(help="https-head, https-body, https-idle or mqtt-connect (repeatable; all)."),
    ] = None,
    connections: Annotated[int, typer.Option(help="Slow peers for each attack.")] = 1000,
    seconds: Annotated[float, typer.Option(help="How long each attack goes on.")] = 100.0,
    gap: Annotated[float, typer.Option(help="Seconds between a trickler's bytes.")] = 1.0,
) -> None:
    """Slow and idle peers against a devprov started here (with the DEVPROV_* settings of the
    environment): how many it held and closed, and whether a fresh client still got in."""
    import asyncio

    from devprov.bench.load import Target
    from devprov.bench.runner import BenchConfig, devprov_server
    from devprov.bench.slowloris import ATTACKS, slowloris
    from devprov.bench.wire import client_context
    from devprov.process import raise_file_limit

    chosen = [a for a in ATTACKS if not attack or a in attack]
    raise_file_limit()
    table = Table("attack", "peers", "opened", "closed by server", "held", "fresh client", "s")
    with devprov_server(BenchConfig(scenarios=[])) as (info, _pid):
        target = Target(
            "127.0.0.1",
            info["httpsPort"],
            info["mqttPort"],
            client_context(info["caCertificatePath"]),
        )
        for name in chosen:
            result = asyncio.run(slowloris(target, name, connections, seconds, gap))
            table.add_row(
                name,
                str(connections),
                str(result.opened),
                str(result.closed_by_server),
                str(result.held),
                "answered" if result.probe_ok else "NOT answered",
                f"{result.seconds:.0f}",
            )
    console.print(table)
