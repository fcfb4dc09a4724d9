"""`devprov serve`, `devprov init`, `devprov db upgrade` and `devprov info`."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer
from pydantic import ValidationError
from rich.table import Table

from devprov.cli.common import (
    DataDir,
    JsonFlag,
    console,
    err_console,
    fail,
    instance_of,
    with_admin,
)
from devprov.settings import DEFAULT_DATA_DIR, Settings

db_app = typer.Typer(help="The store's schema.", no_args_is_help=True)
ConfigFile = Annotated[
    Path | None,
    typer.Option(
        "--config", envvar="DEVPROV_CONFIG", help="Settings file (TOML); default DIR/devprov.toml."
    ),
]


def _settings(config: Path | None, **flags: object) -> Settings:
    try:
        return Settings.load(config, **flags)
    except ValidationError as error:
        problems = "; ".join(
            f"{'.'.join(str(part) for part in problem['loc'])}: {problem['msg']}"
            for problem in error.errors(include_url=False)
        )
        raise fail(f"the settings are not valid: {problems}") from None
    except (OSError, ValueError) as error:
        raise fail(f"the settings could not be read: {error}") from None


def serve(
    data_dir: Annotated[
        Path | None, typer.Option(help="Where devprov keeps its state (default ./devprov-data).")
    ] = None,
    config: ConfigFile = None,
    host: Annotated[
        str | None, typer.Option(help="Address to listen on (default localhost).")
    ] = None,
    https_port: Annotated[int | None, typer.Option(help="HTTPS port (default 443).")] = None,
    mqtt_port: Annotated[int | None, typer.Option(help="MQTT port (default 8883).")] = None,
    amqp_port: Annotated[int | None, typer.Option(help="AMQP port (default 5671).")] = None,
    db: Annotated[
        str | None, typer.Option(help="Database URL: sqlite:///FILE or postgresql://...")
    ] = None,
    name: Annotated[
        list[str] | None,
        typer.Option(
            help="Extra host name for the server certificate; the first is the advertised one."
        ),
    ] = None,
    tls_cert: Annotated[
        Path | None, typer.Option(help="Your own server certificate (PEM chain).")
    ] = None,
    tls_key: Annotated[Path | None, typer.Option(help="The key of --tls-cert.")] = None,
    webhook_timeout: Annotated[
        float | None, typer.Option(help="Seconds to wait for a custom allocation webhook (10).")
    ] = None,
    webhook_secret: Annotated[
        str | None,
        typer.Option(
            envvar="DEVPROV_WEBHOOK_SECRET",
            help="Sign every webhook request: X-Devprov-Signature: t=UNIX_SECONDS,v1=HMAC.",
        ),
    ] = None,
    webhook_retries: Annotated[
        int | None,
        typer.Option(help="Retry webhook calls that fail to connect or get 502/503/504 (0)."),
    ] = None,
    allocator: Annotated[
        list[str] | None,
        typer.Option(
            help="In-process allocator NAME=package.module:function (repeatable); enrollments"
            " select it with webhookUrl allocator://NAME."
        ),
    ] = None,
    exchange_log_size: Annotated[
        int | None, typer.Option(help="Allocation exchanges kept per enrollment (100).")
    ] = None,
    hub_connector_timeout: Annotated[
        float | None,
        typer.Option(help="Seconds a hub connector's call may take, retries included (10)."),
    ] = None,
    max_message_bytes: Annotated[
        int | None, typer.Option(help="Largest device message accepted, payload included.")
    ] = None,
    registration_deadline: Annotated[
        float | None,
        typer.Option(help="Seconds a registration may take, webhook and hub calls included (60)."),
    ] = None,
    workers: Annotated[
        int | None, typer.Option(help="Processes serving the same ports and store (SO_REUSEPORT).")
    ] = None,
    log_level: Annotated[str | None, typer.Option(help="Logging level (INFO).")] = None,
    default_hub: Annotated[
        str | None,
        typer.Option(help="Link a built-in IoT hub of this name when no hub is linked yet."),
    ] = None,
    log_format: Annotated[
        str | None, typer.Option(help="Log lines as `text` (default) or `json`, one a line.")
    ] = None,
    metrics: Annotated[
        str | None,
        typer.Option(help="Who may read /metrics: `loopback` (default), `open`, `token` or `off`."),
    ] = None,
    metrics_token: Annotated[
        str | None,
        typer.Option(
            envvar="DEVPROV_METRICS_TOKEN", help="Bearer token for /metrics when --metrics token."
        ),
    ] = None,
    console: Annotated[
        bool | None, typer.Option("--console/--no-console", help="Serve the web console.")
    ] = None,
) -> None:
    """Run devprov: the device APIs (HTTPS, MQTT, AMQP, both over WebSocket) and the service API."""
    from devprov.allocation.functions import parse_allocator_specs
    from devprov.log_format import configure_logging
    from devprov.wiring import prepare, run

    settings = _settings(
        config,
        data_dir=data_dir,
        host=host,
        https_port=https_port,
        mqtt_port=mqtt_port,
        amqp_port=amqp_port,
        db=db,
        names=name,
        tls_cert=tls_cert,
        tls_key=tls_key,
        webhook_timeout=webhook_timeout,
        webhook_secret=webhook_secret,
        webhook_retries=webhook_retries,
        allocators=_allocator_flags(allocator),
        exchange_log_size=exchange_log_size,
        hub_connector_timeout=hub_connector_timeout,
        max_message_bytes=max_message_bytes,
        registration_deadline=registration_deadline,
        workers=workers,
        log_level=log_level,
        default_hub=default_hub,
        log_format=log_format,
        metrics=metrics,
        metrics_token=metrics_token,
        console=console,
    )
    if (settings.tls_cert is None) != (settings.tls_key is None):
        raise typer.BadParameter("--tls-cert and --tls-key go together")
    try:
        parse_allocator_specs(settings.allocators)  # a typo is told now, not at a registration
    except ValueError as error:
        raise fail(f"{error} (give --allocator NAME=package.module:function)") from None
    configure_logging(settings.log_level, settings.log_format)
    instance, tls = prepare(settings)
    err_console.print(
        f"devprov: id scope [bold]{instance.id_scope}[/bold] on"
        f" https://{instance.host_name}:{instance.https_port} and"
        f" mqtts://{instance.host_name}:{instance.mqtt_port} and"
        f" amqps://{instance.host_name}:{instance.amqp_port} (CA: {tls.ca_cert})"
    )
    run(settings)


def _allocator_flags(flags: list[str] | None) -> dict[str, str] | None:
    """`--allocator NAME=package.module:function`, repeated, as the settings' mapping."""
    if not flags:
        return None
    allocators = {}
    for flag in flags:
        name, equals, spec = flag.partition("=")
        if not equals or not name.strip() or not spec.strip():
            raise fail(f"--allocator {flag!r}: write NAME=package.module:function")
        allocators[name.strip()] = spec.strip()
    return allocators


def init(
    data_dir: DataDir = DEFAULT_DATA_DIR,
    db: Annotated[
        str | None, typer.Option(help="Database URL (default: SQLite in the data dir).")
    ] = None,
) -> None:
    """Make a data dir: the instance (id scope, keys), its TLS material and its store."""
    from devprov.store.schema import migrate
    from devprov.wiring import prepare

    instance, _ = prepare(Settings(data_dir=data_dir, db=db))
    migrate(instance.database)
    console.print(f"devprov data dir ready at {data_dir.resolve()} (id scope {instance.id_scope})")


@db_app.command("upgrade")
def db_upgrade(data_dir: DataDir = DEFAULT_DATA_DIR) -> None:
    """Bring the store's schema to this devprov's (`serve` does it too before listening)."""
    from devprov.store.schema import head_revision, migrate

    migrate(instance_of(data_dir).database)
    console.print(f"schema at {head_revision()}")


def info(data_dir: DataDir = DEFAULT_DATA_DIR, as_json: JsonFlag = False) -> None:
    """What a device or a service client needs to reach this devprov."""
    instance = instance_of(data_dir)
    hubs = with_admin(data_dir, lambda admin: admin.list_linked_hubs())
    details = {
        "idScope": instance.id_scope,
        "hostName": instance.host_name,
        "httpsPort": instance.https_port,
        "mqttPort": instance.mqtt_port,
        "amqpPort": instance.amqp_port,
        "serviceConnectionString": instance.connection_string(),
        "caCertificatePath": str((data_dir / "tls" / "ca.pem").resolve()),
        "database": instance.database,
        "linkedHubs": [hub["hostName"] for hub in hubs],
    }
    if as_json:
        print(json.dumps(details, indent=2))
        return
    table = Table(show_header=False)
    for key, value in details.items():
        table.add_row(key, ", ".join(value) if isinstance(value, list) else str(value))
    console.print(table)
