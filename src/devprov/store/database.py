"""The store: reads and writes records as JSON documents in SQLite or PostgreSQL, atomically.

Longer than most modules because every read and write of a record goes through this one class,
so that batching, revisions (which caches depend on) and sealing secrets apply to all of them.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

import sqlalchemy as sa
from sqlalchemy.exc import IntegrityError

from devprov.domain.errors import conflict, precondition_failed
from devprov.domain.records import Change, Kind, Put, Revisions, StoredDocument
from devprov.domain.sealing import Sealer, SealingError
from devprov.store import tables
from devprov.store.connections import (
    AsyncDatabase,
    Database,
    DbConnection,
    InlineSqlite,
    Statement,
    normalize_url,
)
from devprov.store.sealing import (
    FIELDS_VERSION,
    SEALED_FIELDS,
    key_use,
    open_document,
    seal_all,
    seal_document,
)
from devprov.store.statements import RELEASE_CLAIM, REVISIONS, statements_of, upsert_batch
from devprov.store.tables import table_of

T = TypeVar("T")


def strip_etag(value: str) -> str:
    """If-Match arrives raw, quoted, or weak-quoted (W/"..."): compare the bare value."""
    value = value.strip()
    if value.startswith("W/"):
        value = value[2:]
    return value.strip('"')


WriteOp = Callable[[DbConnection], Awaitable[T]]
BatchObserver = Callable[[int, float], None]
"""Told each committed write batch: how many operations it held, and its seconds."""
MAX_BATCH = 256
PREFIX_END = "\U0010ffff"  # sorts after every character a key may hold (keys are compared bytewise)


class Store:
    """Async access to the records.

    Reads go straight to the database. Writes are queued to one writer that commits whatever
    has gathered in a single transaction (a failing operation fails alone, see
    `_write_pending`): under load, hundreds of registrations cost one commit.
    How the database is reached (async driver, or SQLite inline) is connections.py's business.
    With a `sealer`, the secret fields of documents (store/sealing.py) are sealed as they are
    written and opened as they are read: the database holds none of them in plaintext.
    """

    def __init__(self, database: Database, sealer: Sealer | None = None) -> None:
        self.database = database
        self.sealer = sealer
        self._pending: list[tuple[WriteOp[Any], asyncio.Future[Any]]] = []
        self._writer: asyncio.Task[None] | None = None
        self.on_batch: BatchObserver | None = None

    @classmethod
    def connect(cls, url: str, sealer: Sealer | None = None) -> Store:
        """Connect to a database whose schema is current (see `migrate`)."""
        if url.lower().startswith("sqlite"):
            return cls(InlineSqlite(normalize_url(url)), sealer)
        return cls(AsyncDatabase(normalize_url(url)), sealer)

    def _stored(self, kind: Kind, key: str, etag: str, document: dict[str, Any]) -> StoredDocument:
        return StoredDocument(key, etag, open_document(self.sealer, kind, document))

    def _row(self, put: Put) -> dict[str, Any]:
        row = _row(put)
        if self.sealer is not None and put.kind in SEALED_FIELDS:
            row["document"] = seal_document(self.sealer, put.kind, row["document"])
        return row

    async def close(self) -> None:
        if self._writer is not None:
            await asyncio.gather(self._writer, return_exceptions=True)
        await self.database.dispose()

    async def get(self, kind: Kind, key: str) -> StoredDocument | None:
        rows = await self.database.hot(statements_of(kind).select, {"key": key})
        return self._stored(kind, rows[0].key, rows[0].etag, rows[0].document) if rows else None

    async def page(
        self,
        kind: Kind,
        *,
        after: str | None = None,
        limit: int | None = None,
        where: Mapping[str, str] | None = None,
        prefix: str | None = None,
    ) -> list[StoredDocument]:
        """Records in key order, starting after `after`, optionally filtered on lookup columns
        and on how their key starts (a range of the key's index, so it stays fast)."""
        table = table_of(kind)
        query = _filtered(
            sa.select(table.c.key, table.c.etag, table.c.document), kind, where, prefix
        ).order_by(table.c.key)
        if after is not None:
            query = query.where(table.c.key > after)
        if limit is not None:
            query = query.limit(limit)
        async with self.database.connect() as connection:
            rows = (await connection.execute(query)).all()
        return [self._stored(kind, row.key, row.etag, row.document) for row in rows]

    async def count(
        self, kind: Kind, *, where: Mapping[str, str] | None = None, prefix: str | None = None
    ) -> int:
        """How many records `page` would list with these filters and no limit."""
        table = table_of(kind)
        query = _filtered(sa.select(sa.func.count()).select_from(table), kind, where, prefix)
        async with self.database.connect() as connection:
            return int((await connection.execute(query)).scalar_one())

    async def count_by(self, kind: Kind, column: str) -> dict[str | None, int]:
        """How many records hold each value of a lookup column (an indexed one, to be fast)."""
        table = table_of(kind)
        value, count = table.c[column].label("value"), sa.func.count().label("n")
        query = sa.select(value, count).group_by(table.c[column])
        async with self.database.connect() as connection:
            return {row.value: int(row.n) for row in await connection.execute(query)}

    async def schema_revision(self) -> str | None:
        """The migration the database is at (None when it has none): readiness compares it
        with the newest this devprov knows."""
        query = sa.text("SELECT version_num FROM alembic_version")
        async with self.database.connect() as connection:
            try:
                return (await connection.execute(query)).scalar_one_or_none()
            except sa.exc.DBAPIError:
                return None

    async def revisions(self) -> Revisions:
        """The revision of every revised kind: equal answers mean nothing of them changed,
        whichever process wrote (one small read, so a cache can ask before every use)."""
        return tuple(row.revision for row in await self.database.hot(REVISIONS, {}))

    async def together(self, statements: Sequence[Statement]) -> list[Sequence[Any]]:
        """Run `statements` in order as one transaction, each seeing what those before it
        wrote, and answer each one's rows: on PostgreSQL in one round trip, outside the write
        batches; on SQLite in the next write batch (the one way to write there)."""
        if isinstance(self.database, AsyncDatabase):
            return await self.database.direct.pipeline(statements)

        async def run_all(connection: DbConnection) -> list[Sequence[Any]]:
            return [
                (await connection.execute(statement, parameters)).all()
                for statement, parameters in statements
            ]

        return await self.run(run_all)

    def opened(self, kind: Kind, row: Any) -> StoredDocument:
        """A row of (key, etag, document) read by a caller's own statement, secrets opened."""
        return self._stored(kind, row.key, row.etag, row.document)

    async def keys(self, kind: Kind) -> list[str]:
        async with self.database.connect() as connection:
            return [row.key for row in await connection.execute(sa.select(table_of(kind).c.key))]

    # Writes ----------------------------------------------------------------------------

    async def run(self, operation: WriteOp[T]) -> T:
        """Run `operation` in the next write transaction; answers what it returns (or raises
        what it raised, in which case nothing it wrote is kept)."""
        future: asyncio.Future[T] = asyncio.get_running_loop().create_future()
        self._pending.append((operation, future))
        if self._writer is None or self._writer.done():
            self._writer = asyncio.create_task(self._write_pending())
        return await future

    async def _write_pending(self) -> None:
        """Commit what has gathered in one transaction. Should any operation fail, that
        transaction is rolled back and each operation runs again in a transaction of its own,
        so only the failing one fails (failures are rare: a stale etag, an existing id)."""
        while self._pending:
            batch, self._pending = self._pending[:MAX_BATCH], self._pending[MAX_BATCH:]
            started = time.perf_counter()
            try:
                one_statement = self._one_statement([op for op, _ in batch])
                if one_statement is not None:
                    await self.database.hot(*one_statement)
                    results: list[Any] = [None] * len(batch)
                else:
                    async with self.database.begin() as connection:
                        results = await self._run_batch(connection, [op for op, _ in batch])
            except Exception:
                for operation, future in batch:
                    await self._write_alone(operation, future)
                continue
            if self.on_batch is not None:
                self.on_batch(len(batch), time.perf_counter() - started)
            for (_, future), value in zip(batch, results, strict=True):
                if not future.done():
                    future.set_result(value)

    async def _write_alone(self, operation: WriteOp[Any], future: asyncio.Future[Any]) -> None:
        try:
            async with self.database.begin() as connection:
                value = await operation(connection)
        except Exception as error:
            if not future.done():
                future.set_exception(error)
            return
        if not future.done():
            future.set_result(value)

    async def create(self, put: Put) -> None:
        """Insert a record that must not exist yet (409201 otherwise)."""

        async def insert(connection: DbConnection) -> None:
            try:
                await connection.execute(sa.insert(table_of(put.kind)).values(**self._row(put)))
            except IntegrityError:
                raise conflict(f"A record with id {put.key!r} already exists.") from None
            await _bump(connection, put.kind)

        await self.run(insert)

    async def replace(self, put: Put, if_match: str | None) -> bool:
        """Upsert a record; with an If-Match other than `*` the stored etag must match (412).

        Returns True when the record was created."""

        async def replace(connection: DbConnection) -> bool:
            if if_match is None or strip_etag(if_match) == "*":
                existed = await self._exists(connection, put.kind, put.key)
                await self._upsert(connection, put)
                return not existed
            table = table_of(put.kind)
            result = await connection.execute(
                sa.update(table)
                .where(table.c.key == put.key, table.c.etag == strip_etag(if_match))
                .values(**self._row(put))
            )
            if result.rowcount != 1:
                raise precondition_failed()
            await _bump(connection, put.kind)
            return False

        return await self.run(replace)

    async def delete(self, kind: Kind, key: str, if_match: str | None = None) -> bool:
        """Delete a record; False when there was none. A stale If-Match raises 412."""
        table = table_of(kind)

        async def delete(connection: DbConnection) -> bool:
            statement = sa.delete(table).where(table.c.key == key)
            if if_match is not None and strip_etag(if_match) != "*":
                if not await self._exists(connection, kind, key):
                    return False
                statement = statement.where(table.c.etag == strip_etag(if_match))
                if (await connection.execute(statement)).rowcount != 1:
                    raise precondition_failed()
                await _bump(connection, kind)
                return True
            deleted = bool((await connection.execute(statement)).rowcount)
            if deleted:
                await _bump(connection, kind)
            return deleted

        return await self.run(delete)

    async def write(self, puts: Sequence[Put], releasing: Sequence[tuple[str, str]] = ()) -> None:
        """Upsert several records together: all of them are written, or none. `releasing`:
        the registration claims, as (registration key, owner), let go in the same
        transaction (those another owner holds now are left alone)."""
        await self.run(_Upserts(self, tuple(puts), tuple(releasing)))

    async def update(self, kind: Kind, key: str, change: Change) -> Put | None:
        """Read a record and write what `change` makes of it, in one transaction."""

        async def read_modify_write(connection: DbConnection) -> Put | None:
            put = change(await self.fetch(connection, kind, key))
            if put is not None:
                await self._upsert(connection, put)
            return put

        return await self.run(read_modify_write)

    async def _run_batch(
        self, connection: DbConnection, operations: list[WriteOp[Any]]
    ) -> list[Any]:
        """Run a batch in order; consecutive plain upserts (most of a busy batch: registration
        records, hub devices) go to the database as one executemany per kind."""
        results: list[Any] = []
        run: list[Put] = []
        releasing: list[tuple[str, str]] = []
        for operation in operations:
            if isinstance(operation, _Upserts):
                run.extend(operation.puts)
                releasing.extend(operation.releasing)
                results.append(None)
                continue
            await self._upsert_many(connection, run, releasing)
            run, releasing = [], []
            results.append(await operation(connection))
        await self._upsert_many(connection, run, releasing)
        return results

    def _one_statement(
        self, operations: list[WriteOp[Any]]
    ) -> tuple[sa.TextClause, dict[str, str]] | None:
        """PostgreSQL, a batch of plain upserts of kinds no cache watches (what registrations
        write under load: their records and hub devices): the whole batch as one statement
        (statements.upsert_batch), run in autocommit. One statement is one transaction, so it
        is all or nothing as the batch's transaction was, in one round trip where BEGIN, an
        executemany per kind and COMMIT took four (None: not such a batch). A key written twice
        in a batch is written once, as it ends: one statement may not touch a row twice."""
        if self.database.dialect_name != "postgresql":
            return None
        by_kind: dict[Kind, dict[str, dict[str, Any]]] = {}
        releasing: list[dict[str, str]] = []
        for operation in operations:
            if not isinstance(operation, _Upserts):
                return None
            for put in operation.puts:
                if put.kind.revised:
                    return None
                by_kind.setdefault(put.kind, {})[put.key] = self._row(put)
            releasing.extend({"key": key, "owner": owner} for key, owner in operation.releasing)
        if not by_kind:
            return None
        parameters = {
            f"rows_{number}": _json(list(rows.values()))
            for number, rows in enumerate(by_kind.values())
        }
        if releasing:
            parameters["releasing"] = _json(releasing)
        return upsert_batch(tuple(by_kind), releasing=bool(releasing)), parameters

    async def _upsert_many(
        self, connection: DbConnection, puts: list[Put], releasing: Sequence[tuple[str, str]] = ()
    ) -> None:
        by_kind: dict[Kind, list[dict[str, Any]]] = {}
        for put in puts:
            by_kind.setdefault(put.kind, []).append(self._row(put))
        for kind, rows in by_kind.items():
            statement = statements_of(kind).upsert[self.database.dialect_name]
            await connection.execute(statement, rows)
            await _bump(connection, kind)
        if releasing:
            mine = [{"claim": key, "holder": owner} for key, owner in releasing]
            await connection.execute(RELEASE_CLAIM, mine)

    async def seal_secrets(self, *, again: bool = False) -> int:
        """Seal every secret field under the sealer's current key, in one transaction: those
        an older devprov wrote in plaintext and those sealed under another key (a rotation).
        Skipped when the store says it was done for this key already, unless `again`.
        How many records changed."""
        sealer = self.sealer
        if sealer is None:
            raise ValueError("this store has no sealer")
        table = tables.sealing

        async def seal(connection: DbConnection) -> int:
            query = sa.select(table.c.value).where(table.c.name == "key")
            marker = (await connection.execute(query)).scalar_one_or_none()
            done = (marker or "").partition("/")[0]
            if done and done not in sealer.key_ids:
                sealer.refresh(force=True)  # a rotation by another process may have added it
            if done and done not in sealer.key_ids:
                raise SealingError(
                    f"the store's secrets are sealed under key {done}, which is not held (held:"
                    f" {', '.join(sealer.key_ids)}): give devprov the key file or"
                    " DEVPROV_SECRET_KEY that has it"
                )
            current = f"{sealer.current_id}/{FIELDS_VERSION}"
            if marker == current and not again:
                return 0
            changed = await seal_all(connection, sealer)
            await connection.execute(sa.delete(table).where(table.c.name == "key"))
            await connection.execute(sa.insert(table).values(name="key", value=current))
            return changed

        return await self.run(seal)

    async def sealed_by_key(self) -> dict[str, int]:
        """How many secret fields each key id seals (`plaintext`: not sealed)."""
        async with self.database.connect() as connection:
            return await key_use(connection)

    async def prune(self, kind: Kind, older_than: float) -> int:
        """Delete the records of `kind` last written before `older_than` (epoch seconds)."""
        table = table_of(kind)

        async def delete_old(connection: DbConnection) -> int:
            result = await connection.execute(
                sa.delete(table).where(table.c.updated_at < older_than)
            )
            return int(result.rowcount or 0)

        return await self.run(delete_old)

    async def fetch(self, connection: DbConnection, kind: Kind, key: str) -> StoredDocument | None:
        """Read a record inside a write transaction (sees that transaction's own writes)."""
        row = (await connection.execute(statements_of(kind).select, {"key": key})).first()
        return self._stored(kind, row.key, row.etag, row.document) if row else None

    async def _exists(self, connection: DbConnection, kind: Kind, key: str) -> bool:
        table = table_of(kind)
        found = await connection.execute(sa.select(table.c.key).where(table.c.key == key))
        return found.first() is not None

    async def _upsert(self, connection: DbConnection, put: Put) -> None:
        statement = statements_of(put.kind).upsert[self.database.dialect_name]
        await connection.execute(statement, self._row(put))
        await _bump(connection, put.kind)


SelectT = TypeVar("SelectT", bound=sa.Select[Any])


def _filtered(
    query: SelectT, kind: Kind, where: Mapping[str, str] | None, prefix: str | None
) -> SelectT:
    table = table_of(kind)
    for column, value in (where or {}).items():
        query = query.where(table.c[column] == value)
    if prefix:
        query = query.where(table.c.key >= prefix, table.c.key < prefix + PREFIX_END)
    return query


async def _bump(connection: DbConnection, kind: Kind) -> None:
    if kind.revised:
        table = tables.revisions
        await connection.execute(
            sa.update(table).where(table.c.kind == kind.value).values(revision=table.c.revision + 1)
        )


def _row(put: Put) -> dict[str, Any]:
    row = dict.fromkeys(table_of(put.kind).c.keys())  # every column: the upsert names them all
    row.update(key=put.key, etag=put.etag, document=dict(put.document), updated_at=time.time())
    row.update(put.columns)
    return row


@dataclass(frozen=True)
class _Upserts:
    """A write operation that only upserts records (and lets registration claims go), which
    the writer may merge with others."""

    store: Store
    puts: tuple[Put, ...]
    releasing: tuple[tuple[str, str], ...] = ()

    async def __call__(self, connection: DbConnection) -> None:
        await self.store._upsert_many(connection, list(self.puts), self.releasing)


def _json(rows: list[dict[str, Any]]) -> str:
    return json.dumps(rows, separators=(",", ":"))
