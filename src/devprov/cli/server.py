"""`devprov serve`, `devprov init`, `devprov db upgrade` and `devprov info`."""

from __future__ import annotations

import errno
import json
import os
import socket
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from devprov.cli.common import (
    DEFAULT_DATA_DIR,
    DataDir,
    JsonFlag,
    UserError,
    console,
    err_console,
    fail,
    instance_of,
    report,
    with_admin,
    with_store,
)

if TYPE_CHECKING:
    from devprov.settings import Settings

db_app = typer.Typer(rich_markup_mode=None, help="The store's schema.", no_args_is_help=True)
ConfigFile = Annotated[
    Path | None,
    typer.Option(
        "--config", envvar="DEVPROV_CONFIG", help="Settings file (TOML); default DIR/devprov.toml."
    ),
]


def _settings(config: Path | None, **flags: object) -> Settings:
    from pydantic import ValidationError

    from devprov.settings import Settings

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
    audit_retention_days: Annotated[
        float | None, typer.Option(help="Days the audit trail keeps an entry (90).")
    ] = None,
    registration_deadline: Annotated[
        float | None,
        typer.Option(help="Seconds a registration may take, webhook and hub calls included (60)."),
    ] = None,
    workers: Annotated[
        int | None, typer.Option(help="Processes serving the same ports and store (SO_REUSEPORT).")
    ] = None,
    drain_seconds: Annotated[
        float | None,
        typer.Option(help="On SIGTERM, seconds to finish the registrations held (30)."),
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
    tls_handshake_timeout: Annotated[
        float | None, typer.Option(help="Seconds a client has to finish its TLS handshake (10).")
    ] = None,
    http_header_timeout: Annotated[
        float | None,
        typer.Option(help="Seconds an HTTPS request head may take from its first byte (10)."),
    ] = None,
    http_body_timeout: Annotated[
        float | None,
        typer.Option(help="Seconds a request body may take once its head is in; then 408 (30)."),
    ] = None,
    http_keepalive_timeout: Annotated[
        float | None,
        typer.Option(help="Seconds an HTTPS connection may wait for its next request (75)."),
    ] = None,
    mqtt_connect_timeout: Annotated[
        float | None, typer.Option(help="Seconds from accept to a complete MQTT CONNECT (30).")
    ] = None,
    max_connections: Annotated[
        int | None, typer.Option(help="Connections each listener holds at most; 0: no cap (20000).")
    ] = None,
    max_connections_per_address: Annotated[
        int | None,
        typer.Option(help="Connections each listener holds per source address (0: no cap)."),
    ] = None,
    max_registrations_in_flight: Annotated[
        int | None,
        typer.Option(help="Registrations provisioned at once; more get 429 (2000; 0: no cap)."),
    ] = None,
    max_registrations_in_flight_per_device: Annotated[
        int | None,
        typer.Option(help="Registrations of one id at once; more get 429 (4; 0: no cap)."),
    ] = None,
    sas_max_lifetime: Annotated[
        float | None, typer.Option(help="Seconds ahead a SAS token's expiry may be (one year).")
    ] = None,
) -> None:
    """Run devprov: the device APIs (HTTPS, MQTT, AMQP, both over WebSocket) and the service API."""
    from devprov.allocation.functions import parse_allocator_specs
    from devprov.domain.sealing import SealingError
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
        audit_retention_days=audit_retention_days,
        max_message_bytes=max_message_bytes,
        registration_deadline=registration_deadline,
        workers=workers,
        drain_seconds=drain_seconds,
        log_level=log_level,
        default_hub=default_hub,
        log_format=log_format,
        metrics=metrics,
        metrics_token=metrics_token,
        console=console,
        tls_handshake_timeout=tls_handshake_timeout,
        http_header_timeout=http_header_timeout,
        http_body_timeout=http_body_timeout,
        http_keepalive_timeout=http_keepalive_timeout,
        mqtt_connect_timeout=mqtt_connect_timeout,
        max_connections=max_connections,
        max_connections_per_address=max_connections_per_address,
        max_registrations_in_flight=max_registrations_in_flight,
        max_registrations_in_flight_per_device=max_registrations_in_flight_per_device,
        sas_max_lifetime=sas_max_lifetime,
    )
    if (settings.tls_cert is None) != (settings.tls_key is None):
        raise typer.BadParameter("--tls-cert and --tls-key go together")
    try:
        parse_allocator_specs(settings.allocators)  # a typo is told now, not at a registration
    except ValueError as error:
        raise fail(f"{error} (give --allocator NAME=package.module:function)") from None
    check_writable(settings.data_dir)
    check_ports(settings)
    check_database(settings)
    configure_logging(settings.log_level, settings.log_format)
    try:
        instance, tls = prepare(settings)
        err_console.print(
            f"devprov: id scope [bold]{instance.id_scope}[/bold] on"
            f" https://{instance.host_name}:{instance.https_port} and"
            f" mqtts://{instance.host_name}:{instance.mqtt_port} and"
            f" amqps://{instance.host_name}:{instance.amqp_port} (CA: {tls.ca_cert})"
        )
        run(settings)
    except SealingError as error:  # the key file or DEVPROV_SECRET_KEY is not the right one
        raise fail(str(error)) from None


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
    as_json: JsonFlag = False,
) -> None:
    """Make a data dir: the instance (id scope, keys), its TLS material and its store."""
    from devprov.domain.sealing import SealingError
    from devprov.settings import Settings
    from devprov.store.schema import migrate
    from devprov.wiring import prepare

    settings = Settings(data_dir=data_dir, db=db)
    check_writable(data_dir)
    check_database(settings)
    try:
        instance, _ = prepare(settings)
    except SealingError as error:
        raise fail(str(error)) from None
    migrate(instance.database)
    report(
        as_json,
        f"devprov data dir ready at {data_dir.resolve()} (id scope {instance.id_scope})",
        {"dataDir": str(data_dir.resolve()), "idScope": instance.id_scope},
    )


@db_app.command("upgrade")
def db_upgrade(data_dir: DataDir = DEFAULT_DATA_DIR, as_json: JsonFlag = False) -> None:
    """Bring the store's schema to this devprov's (`serve` does it too before listening)."""
    from devprov.cli.keys import reseal_files
    from devprov.keyring import load_sealer
    from devprov.store.schema import compact, head_revision, migrate

    database = instance_of(data_dir).database
    migrate(database)
    sealer = load_sealer(data_dir)
    sealed = with_store(data_dir, lambda store: store.seal_secrets(), sealer)
    if sealed:
        compact(database)  # the plaintext the sealing overwrote leaves the SQLite file
    files = reseal_files(data_dir, sealer)
    done = f"; sealed the secrets of {sealed} records and {files} files" if sealed else ""
    report(
        as_json,
        f"schema at {head_revision()}{done}",
        {"schema": head_revision(), "sealedRecords": sealed, "sealedFiles": files},
    )


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
    for key, value in details.items():  # whole lines: a connection string is never cut
        shown = ", ".join(value) if isinstance(value, list) else str(value)
        console.print(f"[bold]{key}[/bold]: {shown}", highlight=False, soft_wrap=True)


PORT_FLAGS = {"https_port": "--https-port", "mqtt_port": "--mqtt-port", "amqp_port": "--amqp-port"}


def check_ports(settings: Settings) -> None:
    """Bind each port the server will listen on, before anything is made or printed: a port in
    use or one that needs root is told in one line, with what to do."""
    from devprov.instance import Instance, load_instance

    recorded = load_instance(settings.data_dir)
    defaults = recorded or Instance(id_scope="", policies=[], database="")
    host = settings.host or defaults.host
    for field, flag in PORT_FLAGS.items():
        port = getattr(settings, field) or getattr(defaults, field)
        try:
            addresses = socket.getaddrinfo(
                host or None, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
            )
        except socket.gaierror as error:
            raise UserError(f"cannot listen on {host!r}: {error.strerror} (check --host)") from None
        for family, kind, protocol, _, address in addresses:
            with socket.socket(family, kind, protocol) as probe:
                probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                if family == socket.AF_INET6:
                    probe.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
                try:
                    probe.bind(address)
                except OSError as error:
                    raise UserError(_bind_problem(error, host, port, flag)) from None


def _bind_problem(error: OSError, host: str, port: int, flag: str) -> str:
    if error.errno == errno.EADDRINUSE:
        return (
            f"port {port} on {host} is in use by another program (another devprov?): stop it,"
            f" or choose another port with {flag} N."
        )
    if error.errno == errno.EACCES:
        return (
            f"port {port} is below 1024 and needs root: run as root, give python the right"
            f" (setcap cap_net_bind_service=+ep), or choose a port above 1023 with {flag} N."
        )
    if error.errno == errno.EADDRNOTAVAIL:
        return f"{host} is not an address of this machine: choose another with --host."
    return f"cannot listen on {host}:{port}: {error.strerror}."


def check_writable(data_dir: Path) -> None:
    """The data dir (or the nearest existing parent it would be made in) is writable."""
    existing = data_dir.resolve()
    while not existing.exists():
        existing = existing.parent
    if not existing.is_dir() or not os.access(existing, os.W_OK | os.X_OK):
        raise UserError(
            f"the data dir {data_dir.resolve()} is not writable ({existing} is not a writable"
            " directory): fix its permissions, or choose another with --data-dir."
        )


def check_database(settings: Settings) -> None:
    """The database is reachable before a data dir is made for it."""
    from devprov.instance import load_instance

    recorded = load_instance(settings.data_dir)
    url = settings.db or (recorded.database if recorded else None)
    if url is None or url.lower().startswith("sqlite"):
        return
    import sqlalchemy

    from devprov.store.connections import normalize_url

    try:
        engine = sqlalchemy.create_engine(normalize_url(url))
    except (ValueError, sqlalchemy.exc.ArgumentError) as error:
        raise UserError(f"--db {url!r}: {error}") from None
    try:
        with engine.connect():
            pass
    except sqlalchemy.exc.SQLAlchemyError as error:
        cause = str(getattr(error, "orig", error)).strip().splitlines()[0]
        raise UserError(
            f"the database {url} could not be reached: {cause}. Create it first (createdb NAME)"
            " or correct --db."
        ) from None
    finally:
        engine.dispose()
