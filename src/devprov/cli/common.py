"""What every `devprov` command shares: the data dir, the store, printing, errors.

Only typer and rich are imported here: `devprov --help` must not pay for the store, pydantic or
aiohttp, so every command imports what it needs when it runs.
"""

from __future__ import annotations

import errno
import json
import os
import sys
from collections.abc import Awaitable, Callable, Iterable
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, TypeVar

import typer
from rich.console import Console

if TYPE_CHECKING:
    from devprov.admin import Admin
    from devprov.domain.audit import AdminAudit
    from devprov.domain.sealing import Sealer
    from devprov.instance import Instance
    from devprov.store.database import Store

console = Console()
err_console = Console(stderr=True)
T = TypeVar("T")

DEFAULT_DATA_DIR = Path("devprov-data")  # settings.DEFAULT_DATA_DIR, without pydantic-settings
DEBUG = {"on": bool(os.environ.get("DEVPROV_DEBUG"))}

DataDir = Annotated[
    Path,
    typer.Option("--data-dir", envvar="DEVPROV_DATA_DIR", help="Where devprov keeps its state."),
]
JsonFlag = Annotated[bool, typer.Option("--json", help="Print JSON for machines.")]


class UserError(Exception):
    """A mistake of the user's or the environment's: told in one line, never a traceback."""


def fail(message: str) -> typer.Exit:
    """Say what went wrong in one line on stderr; the caller raises what this returns."""
    err_console.print(f"[red]error[/red]: {message}", highlight=False, soft_wrap=True)
    return typer.Exit(1)


def explain(error: BaseException) -> str | None:
    """One line for an error of the environment's (a database, a port, a file, the network),
    or None when it is a bug of ours (then the traceback is wanted, with --debug)."""
    if isinstance(error, UserError):
        return str(error)
    name = type(error).__name__
    module = type(error).__module__
    if module.startswith("sqlalchemy") and name in ("OperationalError", "InterfaceError"):
        cause = str(getattr(error, "orig", error)).strip().splitlines()[0]
        return (
            f"the database could not be reached: {cause}. Check --db (or `database` in"
            " DIR/devprov.json); a PostgreSQL database must exist first (createdb NAME)."
        )
    if module.startswith("aiohttp") and "Connect" in name:
        return f"could not connect: {error}. Is `devprov serve` running there?"
    if isinstance(error, PermissionError):
        where = error.filename or error
        return f"permission denied: {where}: run as a user who may, or choose another path."
    if isinstance(error, OSError) and error.errno in (errno.ENOSPC, errno.EROFS, errno.ENOTDIR):
        return f"{error.strerror}: {error.filename}"
    return None


def instance_of(data_dir: Path) -> Instance:
    """The instance a data dir holds; commands other than `serve` and `init` never make one."""
    from devprov.domain.sealing import SealingError
    from devprov.instance import load_instance

    data_dir = resolved_data_dir(data_dir)
    try:
        instance = load_instance(data_dir)
    except SealingError as error:
        raise fail(str(error)) from None
    if instance is None:
        raise fail(
            f"no devprov data dir at {data_dir.resolve()}: point this command at yours with"
            " --data-dir DIR, DEVPROV_DATA_DIR or `data_dir` in the settings file"
            " (DEVPROV_CONFIG), or make one with `devprov init` (or `devprov serve`)."
        )
    return instance


def resolved_data_dir(data_dir: Path) -> Path:
    """The data dir a command uses: --data-dir, else DEVPROV_DATA_DIR (typer reads both), else
    `data_dir` in the settings file named by DEVPROV_CONFIG, else ./devprov-data."""
    named = os.environ.get("DEVPROV_CONFIG")
    if data_dir != DEFAULT_DATA_DIR or os.environ.get("DEVPROV_DATA_DIR") or not named:
        return data_dir
    import tomllib

    try:
        with open(named, "rb") as handle:
            configured = tomllib.load(handle).get("data_dir")
    except (OSError, tomllib.TOMLDecodeError) as error:
        raise fail(f"the settings file {named} could not be read: {error}") from None
    return Path(configured) if isinstance(configured, str) else data_dir


def with_store(
    data_dir: Path, work: Callable[[Store], Awaitable[T]], sealer: Sealer | None = None
) -> T:
    """Run one call straight against the store the server uses (whose schema must be current:
    migrating is `devprov db upgrade`'s job, or `serve`'s)."""
    import asyncio

    from devprov.domain.errors import DpsError
    from devprov.domain.sealing import SealingError
    from devprov.keyring import load_sealer
    from devprov.store.database import Store
    from devprov.store.schema import is_current

    data_dir = resolved_data_dir(data_dir)
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
    import getpass

    try:
        return f"cli:{getpass.getuser()}"
    except (KeyError, OSError):
        return f"cli:uid-{os.getuid()}"


def cli_audit(store: Store) -> AdminAudit:
    """Records a command's write in the audit trail, as the local user, from `local`."""
    import time

    from devprov.domain.audit import AuditEntry
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
    from devprov.domain.errors import DpsError

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
    from devprov.admin import Admin
    from devprov.wiring import connector_factory

    return with_store(
        data_dir,
        lambda store: work(Admin(store, connector_factory(store).prepare, cli_audit(store))),
    )


def print_json(value: Any, as_json: bool = False) -> None:
    """A JSON document: highlighted for people, plain with --json (the same JSON)."""
    if as_json:
        print(json.dumps(value, indent=2))
    else:
        console.print_json(json.dumps(value))


def report(as_json: bool, text: str, value: dict[str, Any]) -> None:
    """What a command did: a sentence for people, a JSON object for scripts."""
    if as_json:
        print(json.dumps(value))
    else:
        console.print(text, highlight=False, soft_wrap=True)


def print_listing(
    items: list[dict[str, Any]],
    as_json: bool,
    columns: Iterable[tuple[str, Callable[[dict[str, Any]], Any]]],
) -> None:
    """Every listing the same way: `--json` prints a JSON array of the records, as the service
    API has them; people get a table, paged through rich's pager when stdout is a terminal and
    the listing is longer than the screen."""
    if as_json:
        print(json.dumps(items, indent=2))
        return
    from rich.table import Table

    named = list(columns)
    table = Table(*(title for title, _ in named))
    for item in items:
        table.add_row(*("" if (value := cell(item)) is None else str(value) for _, cell in named))
    if sys.stdout.isatty() and len(items) > console.size.height - 4:
        with console.pager(styles=True):
            console.print(table)
        return
    console.print(table)
