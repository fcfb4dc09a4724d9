"""The `devprov` command line: serve, info, and managing enrollments, groups, records and hubs."""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Annotated, Any, TypeVar

import typer
from rich.console import Console
from rich.table import Table

from devprov.admin import GROUP, INDIVIDUAL, Admin
from devprov.config import DEFAULT_DATA_DIR, Instance, ensure_instance, load_instance
from devprov.domain.errors import DpsError
from devprov.store.database import Store
from devprov.wiring import ServeOptions, prepare, serve_forever

app = typer.Typer(
    help="devprov: a self-hosted Device Provisioning Service, wire-compatible with Azure DPS.",
    no_args_is_help=True,
)
enrollment_app = typer.Typer(help="Individual enrollments.", no_args_is_help=True)
group_app = typer.Typer(help="Enrollment groups.", no_args_is_help=True)
registration_app = typer.Typer(help="Registration records.", no_args_is_help=True)
hub_app = typer.Typer(
    help="Linked IoT hubs and the devices provisioned to them.", no_args_is_help=True
)
device_app = typer.Typer(help="devprov's own device client.", no_args_is_help=True)
app.add_typer(enrollment_app, name="enrollment")
app.add_typer(group_app, name="group")
app.add_typer(registration_app, name="registration")
app.add_typer(hub_app, name="hub")
app.add_typer(device_app, name="device")

console = Console()
err_console = Console(stderr=True)
T = TypeVar("T")

DataDir = Annotated[
    Path,
    typer.Option("--data-dir", envvar="DEVPROV_DATA_DIR", help="Where devprov keeps its state."),
]
JsonFlag = Annotated[bool, typer.Option("--json", help="Print JSON for machines.")]


def _instance(data_dir: Path) -> Instance:
    instance = load_instance(data_dir)
    if instance is None:
        instance = ensure_instance(data_dir)
    return instance


def _with_admin(data_dir: Path, work: Callable[[Admin], Awaitable[T]]) -> T:
    """Run one management call straight against the store the server uses."""

    async def run() -> T:
        store = Store.open(_instance(data_dir).database)
        try:
            return await work(Admin(store))
        finally:
            await store.close()

    try:
        return asyncio.run(run())
    except DpsError as error:
        err_console.print(f"[red]error {error.error_code}[/red]: {error.message}")
        raise typer.Exit(1) from None


def _print_json(value: Any) -> None:
    console.print_json(json.dumps(value))


@app.command()
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
    max_message_bytes: Annotated[int, typer.Option(help="Largest device message accepted.")] = 96
    * 1024,
    log_level: Annotated[str, typer.Option(help="Logging level.")] = "INFO",
) -> None:
    """Run devprov: the device runtime API and the service API over HTTPS."""
    logging.basicConfig(
        level=log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
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
    )
    instance, tls = prepare(options)
    err_console.print(
        f"devprov: id scope [bold]{instance.id_scope}[/bold] on https://{instance.host_name}:{instance.https_port}"
        f" (CA: {tls.ca_cert})"
    )
    asyncio.run(serve_forever(options))


@app.command()
def info(data_dir: DataDir = DEFAULT_DATA_DIR, as_json: JsonFlag = False) -> None:
    """What a device or a service client needs to reach this devprov."""
    instance = _instance(data_dir)
    hubs = _with_admin(data_dir, lambda admin: admin.list_linked_hubs())
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


# Enrollments and groups ------------------------------------------------------------------


def _attestation(key: str | None, secondary_key: str | None) -> dict[str, Any]:
    return {
        "type": "symmetricKey",
        "symmetricKey": {"primaryKey": key, "secondaryKey": secondary_key},
    }


def _allocation(
    policy: str | None, hubs: list[str] | None, webhook: str | None, webhook_api_version: str
) -> dict[str, Any]:
    fields: dict[str, Any] = {}
    if webhook and not policy:
        policy = "custom"
    if policy:
        fields["allocationPolicy"] = policy
    if hubs:
        fields["iotHubs"] = hubs
    if webhook:
        fields["customAllocationDefinition"] = {
            "webhookUrl": webhook,
            "apiVersion": webhook_api_version,
        }
    return fields


Key = Annotated[str | None, typer.Option(help="Primary key (base64); generated when omitted.")]
SecondaryKey = Annotated[
    str | None, typer.Option(help="Secondary key (base64); generated when omitted.")
]
Policy = Annotated[
    str | None, typer.Option("--allocation", help="hashed, geoLatency, static or custom.")
]
Hubs = Annotated[
    list[str] | None, typer.Option("--hub", help="IoT hub this enrollment may use (repeat).")
]
Webhook = Annotated[
    str | None, typer.Option(help="Custom allocation webhook URL (implies --allocation custom).")
]
WebhookApi = Annotated[str, typer.Option(help="customAllocationDefinition.apiVersion.")]
Disabled = Annotated[bool, typer.Option("--disabled", help="Create it disabled.")]


@enrollment_app.command("create")
def enrollment_create(
    registration_id: str,
    data_dir: DataDir = DEFAULT_DATA_DIR,
    key: Key = None,
    secondary_key: SecondaryKey = None,
    device_id: Annotated[
        str | None, typer.Option(help="Device id on the hub (default: the registration id).")
    ] = None,
    allocation: Policy = None,
    hub: Hubs = None,
    webhook: Webhook = None,
    webhook_api_version: WebhookApi = "2021-10-01",
    disabled: Disabled = False,
) -> None:
    """Create or replace a symmetric-key individual enrollment; prints it with its keys."""
    body = {
        "registrationId": registration_id,
        "attestation": _attestation(key, secondary_key),
        "provisioningStatus": "disabled" if disabled else "enabled",
        **_allocation(allocation, hub, webhook, webhook_api_version),
    }
    if device_id:
        body["deviceId"] = device_id
    _print_json(
        _with_admin(data_dir, lambda admin: admin.put(INDIVIDUAL, registration_id, body, None))
    )


@group_app.command("create")
def group_create(
    group_id: str,
    data_dir: DataDir = DEFAULT_DATA_DIR,
    key: Key = None,
    secondary_key: SecondaryKey = None,
    allocation: Policy = None,
    hub: Hubs = None,
    webhook: Webhook = None,
    webhook_api_version: WebhookApi = "2021-10-01",
    disabled: Disabled = False,
) -> None:
    """Create or replace a symmetric-key enrollment group; prints it with its keys."""
    body = {
        "enrollmentGroupId": group_id,
        "attestation": _attestation(key, secondary_key),
        "provisioningStatus": "disabled" if disabled else "enabled",
        **_allocation(allocation, hub, webhook, webhook_api_version),
    }
    _print_json(_with_admin(data_dir, lambda admin: admin.put(GROUP, group_id, body, None)))


def _record_commands(typer_app: typer.Typer, spec: Any, noun: str) -> None:
    @typer_app.command("show")
    def show(
        record_id: str,
        data_dir: DataDir = DEFAULT_DATA_DIR,
        keys: Annotated[bool, typer.Option("--keys", help="Include the keys.")] = False,
    ) -> None:
        """Show one record."""

        async def work(admin: Admin) -> Any:
            record = await admin.get(spec, record_id)
            if keys:
                record["attestation"] = await admin.attestation(spec, record_id)
            return record

        _print_json(_with_admin(data_dir, work))

    @typer_app.command("list")
    def list_(data_dir: DataDir = DEFAULT_DATA_DIR, as_json: JsonFlag = False) -> None:
        """List every record."""

        async def work(admin: Admin) -> list[dict[str, Any]]:
            items: list[dict[str, Any]] = []
            token = None
            while True:
                page = await admin.query(spec, token, 1000)
                items += page.items
                if not (token := page.continuation):
                    return items

        items = _with_admin(data_dir, work)
        if as_json:
            print(json.dumps(items, indent=2))
            return
        table = Table(f"{noun} id", "attestation", "status", "allocation", "hubs")
        for item in items:
            table.add_row(
                item.get(spec.id_field),
                item["attestation"]["type"],
                item.get("provisioningStatus", "enabled"),
                item.get("allocationPolicy", "hashed (default)"),
                ", ".join(item.get("iotHubs") or []) or "all linked",
            )
        console.print(table)

    @typer_app.command("delete")
    def delete(record_id: str, data_dir: DataDir = DEFAULT_DATA_DIR) -> None:
        """Delete one record."""
        _with_admin(data_dir, lambda admin: admin.delete(spec, record_id, None))
        console.print(f"deleted {noun} {record_id}")


_record_commands(enrollment_app, INDIVIDUAL, "registration")
_record_commands(group_app, GROUP, "group")


# Registration records --------------------------------------------------------------------


@registration_app.command("show")
def registration_show(registration_id: str, data_dir: DataDir = DEFAULT_DATA_DIR) -> None:
    """Show a device's registration record, payload included."""
    _print_json(_with_admin(data_dir, lambda admin: admin.get_registration(registration_id)))


@registration_app.command("list")
def registration_list(group_id: str, data_dir: DataDir = DEFAULT_DATA_DIR) -> None:
    """List the registration records of an enrollment group."""

    async def work(admin: Admin) -> list[dict[str, Any]]:
        page = await admin.query_registrations(group_id, None, 1000)
        return page.items

    _print_json(_with_admin(data_dir, work))


@registration_app.command("delete")
def registration_delete(registration_id: str, data_dir: DataDir = DEFAULT_DATA_DIR) -> None:
    """Delete a registration record (the device stays on its hub)."""
    _with_admin(data_dir, lambda admin: admin.delete_registration(registration_id, None))
    console.print(f"deleted registration record {registration_id}")


# Linked hubs -----------------------------------------------------------------------------


@hub_app.command("add")
def hub_add(
    host_name: str,
    data_dir: DataDir = DEFAULT_DATA_DIR,
    weight: Annotated[int, typer.Option(help="allocationWeight, 1-1000.")] = 1,
    apply_allocation_policy: Annotated[
        bool, typer.Option(help="Whether allocation may pick it for enrollments that name no hubs.")
    ] = True,
    location: Annotated[str | None, typer.Option(help="Where the hub is.")] = None,
) -> None:
    """Link an IoT hub (works while `serve` runs; the next registration sees it)."""
    body = {
        "allocationWeight": weight,
        "applyAllocationPolicy": apply_allocation_policy,
        "location": location,
    }
    _print_json(_with_admin(data_dir, lambda admin: admin.put_linked_hub(host_name, body)))


@hub_app.command("list")
def hub_list(data_dir: DataDir = DEFAULT_DATA_DIR) -> None:
    """List linked hubs."""
    _print_json(_with_admin(data_dir, lambda admin: admin.list_linked_hubs()))


@hub_app.command("remove")
def hub_remove(host_name: str, data_dir: DataDir = DEFAULT_DATA_DIR) -> None:
    """Unlink an IoT hub."""
    _with_admin(data_dir, lambda admin: admin.delete_linked_hub(host_name))
    console.print(f"unlinked {host_name}")


@hub_app.command("devices")
def hub_devices(host_name: str, data_dir: DataDir = DEFAULT_DATA_DIR) -> None:
    """The device identities devprov created on a hub (built-in registry connector)."""
    _print_json(_with_admin(data_dir, lambda admin: admin.list_hub_devices(host_name)))


# Device client ---------------------------------------------------------------------------


@device_app.command("register")
def device_register(
    registration_id: str,
    data_dir: DataDir = DEFAULT_DATA_DIR,
    key: Annotated[str | None, typer.Option(help="The device's symmetric key.")] = None,
    group_key: Annotated[
        str | None, typer.Option(help="The enrollment group's key (the device key is derived).")
    ] = None,
    payload: Annotated[
        str | None, typer.Option(help="JSON payload sent with the registration.")
    ] = None,
    host: Annotated[
        str | None, typer.Option(help="devprov host (default: from the data dir).")
    ] = None,
    port: Annotated[
        int | None, typer.Option(help="devprov HTTPS port (default: from the data dir).")
    ] = None,
    id_scope: Annotated[
        str | None, typer.Option(help="Id scope (default: from the data dir).")
    ] = None,
    ca: Annotated[
        Path | None, typer.Option(help="CA certificate to trust (default: from the data dir).")
    ] = None,
) -> None:
    """Register a device over HTTPS and print its registration result."""
    from devprov.client.device import DeviceClient, RegistrationFailed

    instance = load_instance(data_dir)
    if (host is None or id_scope is None) and instance is None:
        raise typer.BadParameter("give --host and --id-scope, or a --data-dir of a devprov")
    client = DeviceClient(
        host=host or (instance.host_name if instance else "localhost"),
        id_scope=id_scope or (instance.id_scope if instance else ""),
        port=port or (instance.https_port if instance else 443),
        ca_file=str(ca or (data_dir / "tls" / "ca.pem")),
    )
    try:
        parsed = json.loads(payload) if payload else None
    except json.JSONDecodeError as exc:
        raise typer.BadParameter(f"--payload is not JSON: {exc}") from None
    try:
        state = asyncio.run(
            client.register(registration_id, symmetric_key=key, group_key=group_key, payload=parsed)
        )
    except RegistrationFailed as failure:
        err_console.print(f"[red]registration failed[/red] (HTTP {failure.status})")
        _print_json(failure.body)
        raise typer.Exit(1) from None
    _print_json(state)


if __name__ == "__main__":
    app()
