"""`devprov hub`: linked IoT hubs and the devices the built-in registry holds for them."""

from __future__ import annotations

from typing import Annotated

import typer

from devprov.cli.common import DataDir, console, print_json, with_admin, with_store
from devprov.settings import DEFAULT_DATA_DIR

hub_app = typer.Typer(
    help="Linked IoT hubs and the devices provisioned to them.", no_args_is_help=True
)


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
    print_json(with_admin(data_dir, lambda admin: admin.put_linked_hub(host_name, body)))


@hub_app.command("list")
def hub_list(data_dir: DataDir = DEFAULT_DATA_DIR) -> None:
    """List linked hubs."""
    print_json(with_admin(data_dir, lambda admin: admin.list_linked_hubs()))


@hub_app.command("remove")
def hub_remove(host_name: str, data_dir: DataDir = DEFAULT_DATA_DIR) -> None:
    """Unlink an IoT hub."""
    with_admin(data_dir, lambda admin: admin.delete_linked_hub(host_name))
    console.print(f"unlinked {host_name}")


@hub_app.command("devices")
def hub_devices(host_name: str, data_dir: DataDir = DEFAULT_DATA_DIR) -> None:
    """The device identities devprov created on a hub (built-in registry connector)."""
    from devprov.hubs.registry import RegistryConnector

    print_json(with_store(data_dir, lambda store: RegistryConnector(store).devices(host_name)))
