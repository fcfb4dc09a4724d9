"""What every `devprov` command shares: the data dir option, the store, printing, errors."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Annotated, Any, TypeVar

import typer
from rich.console import Console

from devprov.admin import Admin
from devprov.config import Instance, ensure_instance, load_instance
from devprov.domain.errors import DpsError
from devprov.store.database import Store

console = Console()
err_console = Console(stderr=True)
T = TypeVar("T")

DataDir = Annotated[
    Path,
    typer.Option("--data-dir", envvar="DEVPROV_DATA_DIR", help="Where devprov keeps its state."),
]
JsonFlag = Annotated[bool, typer.Option("--json", help="Print JSON for machines.")]


def instance_of(data_dir: Path) -> Instance:
    return load_instance(data_dir) or ensure_instance(data_dir)


def with_admin(data_dir: Path, work: Callable[[Admin], Awaitable[T]]) -> T:
    """Run one management call straight against the store the server uses."""

    async def run() -> T:
        store = Store.open(instance_of(data_dir).database)
        try:
            return await work(Admin(store))
        finally:
            await store.close()

    try:
        return asyncio.run(run())
    except DpsError as error:
        err_console.print(f"[red]error {error.error_code}[/red]: {error.message}")
        raise typer.Exit(1) from None


def print_json(value: Any) -> None:
    console.print_json(json.dumps(value))
