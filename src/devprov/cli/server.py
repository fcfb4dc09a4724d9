"""`devprov serve` and `devprov info`."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from devprov.cli.common import DataDir, JsonFlag, console, err_console, instance_of, with_admin
from devprov.config import DEFAULT_DATA_DIR
from devprov.wiring import ServeOptions, configure_logging, prepare, run


def serve(
    data_dir: DataDir = DEFAULT_DATA_DIR,
    host: Annotated[
        str | None, typer.Option(help="Address to listen on (default localhost).")
    ] = None,
    https_port: Annotated[int | None, typer.Option(help="HTTPS port (default 443).")] = None,
    mqtt_port: Annotated[int | None, typer.Option(help="MQTT port (default 8883).")] = None,
    db: Annotated[
        str | None,
        typer.Option(envvar="DEVPROV_DB", help="Database URL: sqlite:///FILE or postgresql://..."),
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
        float, typer.Option(help="Seconds to wait for a custom allocation webhook.")
    ] = 10.0,
    max_message_bytes: Annotated[
        int, typer.Option(help="Largest device message accepted, payload included.")
    ] = 96 * 1024,
    workers: Annotated[
        int, typer.Option(help="Processes serving the same ports and store (SO_REUSEPORT).")
    ] = 1,
    log_level: Annotated[str, typer.Option(help="Logging level.")] = "INFO",
) -> None:
    """Run devprov: the device APIs (HTTPS, MQTT, MQTT over WebSocket) and the service API."""
    configure_logging(log_level)
    if bool(tls_cert) != bool(tls_key):
        raise typer.BadParameter("--tls-cert and --tls-key go together")
    options = ServeOptions(
        data_dir=data_dir,
        host=host,
        https_port=https_port,
        mqtt_port=mqtt_port,
        database=db,
        names=name or [],
        tls_cert=tls_cert,
        tls_key=tls_key,
        webhook_timeout=webhook_timeout,
        max_message_bytes=max_message_bytes,
        workers=workers,
        log_level=log_level,
    )
    instance, tls = prepare(options)
    err_console.print(
        f"devprov: id scope [bold]{instance.id_scope}[/bold] on"
        f" https://{instance.host_name}:{instance.https_port} and"
        f" mqtts://{instance.host_name}:{instance.mqtt_port} (CA: {tls.ca_cert})"
    )
    run(options)


def info(data_dir: DataDir = DEFAULT_DATA_DIR, as_json: JsonFlag = False) -> None:
    """What a device or a service client needs to reach this devprov."""
    instance = instance_of(data_dir)
    hubs = with_admin(data_dir, lambda admin: admin.list_linked_hubs())
    details = {
        "idScope": instance.id_scope,
        "hostName": instance.host_name,
        "httpsPort": instance.https_port,
        "mqttPort": instance.mqtt_port,
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
