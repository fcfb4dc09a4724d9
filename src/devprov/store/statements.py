"""Each kind's hot statements, built once and reused in their compiled form."""

from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite

from devprov.domain.records import Kind
from devprov.store import tables
from devprov.store.tables import table_of


@dataclass(frozen=True)
class _Statements:
    """A kind's hot statements, built once: SQLAlchemy then reuses their compiled form
    instead of building, hashing and looking up a new statement on every call."""

    select: sa.Select[Any]
    upsert: dict[str, Any]


@functools.cache
def statements_of(kind: Kind) -> _Statements:
    table = table_of(kind)
    upserts: dict[str, Any] = {}
    for dialect, insert in (("sqlite", sqlite.insert), ("postgresql", postgresql.insert)):
        statement = insert(table)
        upserts[dialect] = statement.on_conflict_do_update(
            index_elements=["key"],
            set_={column.name: statement.excluded[column.name] for column in table.c
                  if column.name != "key"},
        )  # fmt: skip
    select = sa.select(table.c.key, table.c.etag, table.c.document).where(
        table.c.key == sa.bindparam("key")
    )
    return _Statements(select, upserts)


REVISIONS = sa.select(tables.revisions.c.revision).order_by(tables.revisions.c.kind)
"""Every revised kind's revision, in a fixed order (Store.revisions)."""

_claims = tables.registration_claims
_MINE = (_claims.c.key == sa.bindparam("claim"), _claims.c.owner == sa.bindparam("holder"))
RELEASE_CLAIM = sa.delete(_claims).where(*_MINE)
"""Let a registration claim go, if it is still its owner's (`:claim`, `:holder`)."""
EXPIRE_CLAIM = sa.update(_claims).where(*_MINE).values(expires_at=0.0)
"""Leave a registration claim expired, for the sweep, if it is still its owner's."""


@functools.cache
def upsert_batch(kinds: tuple[Kind, ...], releasing: bool = False) -> sa.TextClause:
    """PostgreSQL: one statement that upserts rows of each of `kinds`, given as one JSON array
    per kind (`:rows_0`, `:rows_1`, ...; keys distinct within an array), the first kinds' as
    data-modifying CTEs, which PostgreSQL always runs; `releasing`: and deletes the registration
    claims given as a JSON array of {key, owner} (`:releasing`) that those owners still hold.
    Its text depends only on its arguments, so it is built once and PostgreSQL prepares it once,
    whatever the number of rows."""
    upserts = []
    if releasing:
        upserts.append(
            f"DELETE FROM {_claims.name} AS c USING json_to_recordset(CAST(:releasing AS json))"
            " AS r(key text, owner text) WHERE c.key = r.key AND c.owner = r.owner"
        )
    for number, kind in enumerate(kinds):
        table = table_of(kind)
        columns = [column.name for column in table.c]
        names = ", ".join(columns)
        updates = ", ".join(f"{name} = excluded.{name}" for name in columns if name != "key")
        upserts.append(
            f"INSERT INTO {table.name} ({names}) SELECT {names}"
            f" FROM json_populate_recordset(NULL::{table.name}, CAST(:rows_{number} AS json))"
            f" ON CONFLICT (key) DO UPDATE SET {updates}"
        )
    *earlier, last = upserts
    with_clause = ", ".join(f"step_{n} AS ({sql})" for n, sql in enumerate(earlier))
    return sa.text(f"WITH {with_clause} {last}" if earlier else last)
