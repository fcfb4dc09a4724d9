"""`devprov audit list`: the audit trail of writes (service API and CLI), newest first."""

from __future__ import annotations

import json
from typing import Annotated

import typer
from rich.table import Table

from devprov.cli.common import DataDir, JsonFlag, console, fail, with_store
from devprov.domain.audit import AuditEntry, parse_since
from devprov.domain.errors import DpsError
from devprov.settings import DEFAULT_DATA_DIR
from devprov.store.audit import MAX_LIMIT, StoredAudit
from devprov.store.database import Store

audit_app = typer.Typer(
    help="The audit trail: who wrote what, when, from where.", no_args_is_help=True
)


@audit_app.command("list")
def listing(
    data_dir: DataDir = DEFAULT_DATA_DIR,
    as_json: JsonFlag = False,
    since: Annotated[
        str | None,
        typer.Option(help="Only entries from this time on: epoch seconds or ISO 8601 (UTC)."),
    ] = None,
    limit: Annotated[
        int, typer.Option(min=1, max=MAX_LIMIT, help="At most this many entries.")
    ] = 100,
) -> None:
    """The newest entries first: time, who, method, path, resource, status, peer."""
    try:
        start = parse_since(since)
    except DpsError as error:
        raise fail(error.message) from None

    async def read(store: Store) -> list[AuditEntry]:
        return await StoredAudit(store).entries(start, limit)

    entries = with_store(data_dir, read)
    if as_json:
        print(json.dumps([entry.to_wire() for entry in entries], indent=2))
        return
    table = Table("at", "who", "method", "path", "status", "peer")
    for entry in entries:
        wire = entry.to_wire()
        table.add_row(
            wire["at"], entry.who, entry.method, entry.path, str(entry.status), entry.peer or ""
        )
    console.print(table)
