"""What every `devprov` command shares: the data dir, the store, printing, errors."""

from __future__ import annotations

import asyncio
import getpass
import json
import os
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Annotated, Any, TypeVar

import typer
from rich.console import Console

from devprov.admin import Admin
from devprov.domain.audit import AdminAudit, AuditEntry
from devprov.domain.errors import DpsError
from devprov.domain.sealing import Sealer, SealingError
from devprov.instance import Instance, load_instance
from devprov.settings import DEFAULT_DATA_DIR
from devprov.store.database import Store

console = Console()
err_console = Console(stderr=True)
T = TypeVar("T")

DataDir = Annotated[
    Path,
    typer.Option("--data-dir", envvar="DEVPROV_DATA_DIR", help="Where devprov keeps its state."),
]
JsonFlag = Annotated[bool, typer.Option("--json", help="Print JSON for machines.")]


def fail(message: str) -> typer.Exit:
    """Say what went wrong in one line on stderr; the caller raises what this returns."""
    err_console.print(f"[red]error[/red]: {message}", highlight=False, soft_wrap=True)
    return typer.Exit(1)


def instance_of(data_dir: Path) -> Instance:
    """The instance a data dir holds; commands other than `serve` and `init` never make one."""
    try:
        instance = load_instance(data_dir)
    except SealingError as error:
        raise fail(str(error)) from None
    if instance is None:
        hint = "" if data_dir != DEFAULT_DATA_DIR else " (the default; set DEVPROV_DATA_DIR)"
        raise fail(
            f"no devprov data dir at {data_dir.resolve()}{hint}: run `devprov init --data-dir"
            f" {data_dir}` (or `devprov serve`) first, or point --data-dir at an existing one."
        )
    return instance


def with_store(
    data_dir: Path, work: Callable[[Store], Awaitable[T]], sealer: Sealer | None = None
) -> T:
    """Run one call straight against the store the server uses (whose schema must be current:
    migrating is `devprov db upgrade`'s job, or `serve`'s)."""
    from devprov.keyring import load_sealer
    from devprov.store.schema import is_current

    database = instance_of(data_dir).database
    if not is_current(database):
        raise fail(
            f"the database of {data_dir} is not at this devprov's schema: run `devprov db"
            f" upgrade --data-dir {data_dir}` (or start `devprov serve`)."
        )

    async def run() -> T:
        store = Store.connect(database, sealer or load_sealer(data_dir))
        try:
            return await work(store)
        finally:
            await store.close()

    try:
        return asyncio.run(run())
    except DpsError as error:
        err_console.print(
            f"[red]error {error.error_code}[/red]: {error.message}", highlight=False, soft_wrap=True
        )
        raise typer.Exit(1) from None
    except SealingError as error:
        raise fail(str(error)) from None


def cli_user() -> str:
    """Who the audit trail names for a command: `cli:` and the local user."""
    try:
        return f"cli:{getpass.getuser()}"
    except (KeyError, OSError):
        return f"cli:uid-{os.getuid()}"


def cli_audit(store: Store) -> AdminAudit:
    """Records a command's write in the audit trail, as the local user, from `local`."""
    from devprov.store.audit import StoredAudit

    trail = StoredAudit(store)

    async def record(method: str, path: str, resource: str | None, status: int) -> None:
        entry = AuditEntry(time.time(), cli_user(), method, path, resource, status, "local")
        await trail.record(entry)

    return record


async def audited(
    store: Store, method: str, path: str, resource: str | None, work: Awaitable[T]
) -> T:
    """Await a write that does not go through the `Admin` facade, recording its outcome."""
    status = 200
    try:
        return await work
    except DpsError as error:
        status = error.status
        raise
    except Exception:
        status = 500
        raise
    finally:
        await cli_audit(store)(method, path, resource, status)


def with_admin(data_dir: Path, work: Callable[[Admin], Awaitable[T]]) -> T:
    """Run one management call, with the rules the service API applies; its writes are
    recorded in the audit trail as the local user's."""
    from devprov.wiring import connector_factory

    return with_store(
        data_dir,
        lambda store: work(Admin(store, connector_factory(store).prepare, cli_audit(store))),
    )


def print_json(value: Any) -> None:
    console.print_json(json.dumps(value))
