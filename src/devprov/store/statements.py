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
    with_revisions: sa.CompoundSelect[Any]


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
    revisions = tables.revisions
    # The record's select comes first: a UNION takes its column types (JSON) from it.
    with_revisions = sa.union_all(
        sa.select(
            sa.literal("record").label("source"),
            table.c.key,
            sa.literal(0).label("revision"),
            table.c.etag,
            table.c.document,
        ).where(table.c.key == sa.bindparam("key")),
        sa.select(
            sa.literal("revision"), revisions.c.kind, revisions.c.revision, sa.null(), sa.null()
        ),
    )
    return _Statements(select, upserts, with_revisions)


@functools.cache
def upsert_batch(kinds: tuple[Kind, ...]) -> sa.TextClause:
    """PostgreSQL: one statement that upserts rows of each of `kinds`, given as one JSON array
    per kind (`:rows_0`, `:rows_1`, ...; keys distinct within an array), the first kinds' as
    data-modifying CTEs, which PostgreSQL always runs. Its text depends only on the kinds, so it
    is built once and PostgreSQL prepares it once, whatever the number of rows."""
    upserts = []
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
    with_clause = ", ".join(f"upsert_{n} AS ({sql})" for n, sql in enumerate(earlier))
    return sa.text(f"WITH {with_clause} {last}" if earlier else last)
