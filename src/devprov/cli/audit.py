"""`devprov audit list`: the audit trail of writes (service API and CLI), newest first."""

from __future__ import annotations

from operator import itemgetter
from typing import TYPE_CHECKING, Annotated, Any

import typer

from devprov.cli.common import DEFAULT_DATA_DIR, DataDir, JsonFlag, fail, print_listing, with_store

if TYPE_CHECKING:
    from devprov.store.database import Store

MAX_LIMIT = 1000  # store.audit.MAX_LIMIT, without importing the store for --help

audit_app = typer.Typer(
    rich_markup_mode=None,
    help="The audit trail: who wrote what, when, from where.",
    no_args_is_help=True,
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
    from devprov.domain.audit import parse_since
    from devprov.domain.errors import DpsError
    from devprov.store.audit import StoredAudit

    try:
        start = parse_since(since)
    except DpsError as error:
        raise fail(error.message) from None

    async def read(store: Store) -> list[dict[str, Any]]:
        return [entry.to_wire() for entry in await StoredAudit(store).entries(start, limit)]

    columns = ("at", "who", "method", "path", "status", "peer")
    print_listing(with_store(data_dir, read), as_json, [(c, itemgetter(c)) for c in columns])
