"""`devprov hub`: linked IoT hubs, the built-in hubs' devices and their device-to-cloud messages."""

from __future__ import annotations

import contextlib
import json
import time
from typing import TYPE_CHECKING, Annotated, Any

import typer

from devprov.cli.common import (
    DEFAULT_DATA_DIR,
    DataDir,
    JsonFlag,
    console,
    fail,
    print_json,
    print_listing,
    report,
    with_admin,
    with_store,
)
from devprov.cli.records import check_host_name

if TYPE_CHECKING:
    from devprov.admin import Admin
    from devprov.store.database import Store

hub_app = typer.Typer(
    rich_markup_mode=None,
    help="Linked IoT hubs, the devices provisioned to them, and what built-in hubs received.",
    no_args_is_help=True,
)


@hub_app.command("add")
def hub_add(
    host_name: str,
    data_dir: DataDir = DEFAULT_DATA_DIR,
    connector: Annotated[
        str,
        typer.Option(
            help="Hub connector: builtin (devprov's own IoT hub), azure-iothub, mosquitto or"
            " http (docs/hubs.md)."
        ),
    ] = "builtin",
    connection_string: Annotated[
        str | None,
        typer.Option(
            help="The connector's connection string (a built-in hub makes its own): an IoT"
            " hub's iothubowner one, mqtt://USER:PASSWORD@HOST:PORT, or Url=...;Secret=..."
        ),
    ] = None,
    weight: Annotated[int, typer.Option(help="allocationWeight, 1-1000.")] = 1,
    apply_allocation_policy: Annotated[
        bool, typer.Option(help="Whether allocation may pick it for enrollments that name no hubs.")
    ] = True,
    location: Annotated[str | None, typer.Option(help="Where the hub is.")] = None,
    as_json: JsonFlag = False,
) -> None:
    """Link an IoT hub (works while `serve` runs; the next registration sees it)."""
    check_host_name(host_name)
    body = {
        "connector": connector,
        "connectionString": connection_string,
        "allocationWeight": weight,
        "applyAllocationPolicy": apply_allocation_policy,
        "location": location,
    }
    print_json(with_admin(data_dir, lambda admin: admin.put_linked_hub(host_name, body)), as_json)


@hub_app.command("update")
def hub_update(
    host_name: str,
    data_dir: DataDir = DEFAULT_DATA_DIR,
    weight: Annotated[int | None, typer.Option(help="allocationWeight, 1-1000.")] = None,
    apply_allocation_policy: Annotated[
        bool | None,
        typer.Option(help="Whether allocation may pick it for enrollments that name no hubs."),
    ] = None,
    location: Annotated[str | None, typer.Option(help="Where the hub is.")] = None,
    connection_string: Annotated[
        str | None, typer.Option(help="A new connection string for its connector.")
    ] = None,
    as_json: JsonFlag = False,
) -> None:
    """Change only what is given of a linked hub (its connector and the rest stay)."""
    changes = {
        "allocationWeight": weight,
        "applyAllocationPolicy": apply_allocation_policy,
        "location": location,
        "connectionString": connection_string,
    }

    async def work(admin: Admin) -> dict[str, Any]:
        hub = await admin.get_linked_hub(host_name)  # without its connection string: kept
        hub.update({name: value for name, value in changes.items() if value is not None})
        return await admin.put_linked_hub(host_name, hub)

    print_json(with_admin(data_dir, work), as_json)


@hub_app.command("list")
def hub_list(data_dir: DataDir = DEFAULT_DATA_DIR, as_json: JsonFlag = False) -> None:
    """List linked hubs (a table; --json: a JSON array)."""
    print_listing(
        with_admin(data_dir, lambda admin: admin.list_linked_hubs()),
        as_json,
        [
            ("hub", lambda hub: hub["hostName"]),
            ("connector", lambda hub: hub.get("connector", "builtin")),
            ("weight", lambda hub: hub.get("allocationWeight", 1)),
            ("allocation applies", lambda hub: hub.get("applyAllocationPolicy", True)),
            ("location", lambda hub: hub.get("location")),
        ],
    )


@hub_app.command("show")
def hub_show(
    host_name: str, data_dir: DataDir = DEFAULT_DATA_DIR, as_json: JsonFlag = False
) -> None:
    """A linked hub; a built-in hub's connection string (its iothubowner one, which the IoT Hub
    service SDKs take) is shown, another connector's only as its host and user or key name."""

    async def read(store: Store) -> dict[str, Any]:
        from devprov.domain.ids import id_key
        from devprov.domain.records import Kind
        from devprov.hub.devices import HubDevices

        stored = await store.get(Kind.LINKED_HUB, id_key(host_name))
        if stored is None:
            raise fail(f"IoT hub {host_name!r} is not linked (see `devprov hub list`).")
        from devprov.hubs.masking import masked

        hub = dict(stored.document)
        if hub.get("connector", "builtin") != "builtin" and hub.get("connectionString"):
            hub["connectionString"] = masked(hub["connectionString"])
        hub["devices"] = len(await HubDevices(store).list(hub["hostName"]))
        return hub

    hub = with_store(data_dir, read)
    if as_json:
        print(json.dumps(hub, indent=2))
        return
    for key, value in hub.items():
        console.print(f"[bold]{key}[/bold]: {value}", highlight=False, soft_wrap=True)


@hub_app.command("check")
def hub_check(
    host_name: str,
    data_dir: DataDir = DEFAULT_DATA_DIR,
    timeout: Annotated[float, typer.Option(help="Seconds each step may take.")] = 10.0,
    as_json: JsonFlag = False,
) -> None:
    """Try a linked hub's connector: can it reach the hub, and may it do its work? Changes
    nothing a device relies on; exits 1 when something is wrong, saying what."""

    async def run(store: Store) -> list[Any] | None:
        from devprov.wiring import check_hub

        return await check_hub(store, host_name, timeout)

    findings = with_store(data_dir, run)
    if findings is None:
        raise fail(f"IoT hub {host_name!r} is not linked (see `devprov hub list`).")
    if as_json:
        print(json.dumps([vars(finding) for finding in findings], indent=2))
    for finding in [] if as_json else findings:
        mark = "[green]✓[/green]" if finding.ok else "[red]✗[/red]"
        console.print(f"{mark} {finding.what}: {finding.detail}", highlight=False, soft_wrap=True)
    if not all(finding.ok for finding in findings):
        raise typer.Exit(1)


@hub_app.command("remove")
def hub_remove(
    host_name: str, data_dir: DataDir = DEFAULT_DATA_DIR, as_json: JsonFlag = False
) -> None:
    """Unlink an IoT hub."""
    with_admin(data_dir, lambda admin: admin.delete_linked_hub(host_name))
    report(as_json, f"unlinked {host_name}", {"removed": host_name})


@hub_app.command("devices")
def hub_devices(
    host_name: str, data_dir: DataDir = DEFAULT_DATA_DIR, as_json: JsonFlag = False
) -> None:
    """The device identities on a built-in hub, as DPS wrote them (--json: a JSON array)."""

    async def read(store: Store) -> list[dict[str, Any]]:
        from devprov.domain.hub_identities import provisioned_view
        from devprov.hub.devices import HubDevices

        devices = await HubDevices(store).list(host_name)
        return [provisioned_view(device, host_name) for device in devices]

    print_listing(
        with_store(data_dir, read),
        as_json,
        [
            ("device id", lambda device: device.get("deviceId")),
            ("status", lambda device: device.get("status")),
            ("authentication", lambda device: (device.get("authentication") or {}).get("type")),
        ],
    )


@hub_app.command("messages")
def hub_messages(
    host_name: str,
    data_dir: DataDir = DEFAULT_DATA_DIR,
    follow: Annotated[bool, typer.Option("--follow", "-f", help="Keep printing new ones.")] = False,
    limit: Annotated[int, typer.Option(help="How many of the newest to show first.")] = 20,
    as_json: JsonFlag = False,
) -> None:
    """Device-to-cloud messages a built-in hub received, oldest first."""
    import asyncio

    from devprov.store.hub_messages import read_messages

    async def watch(store: Store) -> None:
        page = await read_messages(store, host_name, limit=limit)
        if not as_json and page.dropped:
            console.print(f"({page.dropped} older messages were dropped)", style="dim")
        last = _show(page.messages, as_json)
        while follow:
            await asyncio.sleep(0.5)
            last = _show(
                (await read_messages(store, host_name, after=last)).messages, as_json, last
            )

    with contextlib.suppress(KeyboardInterrupt):  # Ctrl-C ends --follow
        with_store(data_dir, watch)


def _show(messages: list[tuple[int, dict[str, Any]]], as_json: bool, last: int = 0) -> int:
    for number, message in messages:
        if as_json:
            print(json.dumps({"sequenceNumber": number, **message}), flush=True)
            continue
        stamp = time.strftime("%H:%M:%S", time.localtime(message.get("enqueuedAt", 0)))
        properties = {**message.get("systemProperties", {}), **message.get("properties", {})}
        shown = " ".join(f"{key}={value}" for key, value in properties.items())
        console.print(
            f"[dim]{stamp}[/dim] [bold]{message['deviceId']}[/bold] {message['body']}"
            + (f" [dim]{shown}[/dim]" if shown else ""),
            highlight=False,
            soft_wrap=True,
        )
        last = number
    return max([last, *(number for number, _ in messages)])
