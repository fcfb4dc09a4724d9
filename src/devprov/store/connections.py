"""How the store reaches its database: PostgreSQL through an async driver, SQLite inline.

SQLite answers a lookup by primary key in microseconds, less than it costs to hand the query
to a thread and back (aiosqlite's way) and far less than the GIL contention such threads cause
under load. So SQLite runs on the event loop's own thread, through SQLAlchemy's synchronous
engine: reads never block in WAL mode, and writes are batched by the store into one short
transaction. PostgreSQL queries cross the network and go through psycopg's async driver.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator, Mapping, Sequence
from contextlib import AbstractAsyncContextManager, asynccontextmanager, contextmanager
from pathlib import Path
from typing import Any, Protocol

import psycopg
import sqlalchemy as sa
from psycopg.rows import namedtuple_row
from sqlalchemy.engine import CursorResult
from sqlalchemy.ext.asyncio import create_async_engine
from sqlalchemy.sql.base import Executable

SQLITE_BUSY_SECONDS = 30
# PostgreSQL connections per process, kept open: a read takes a fraction of a millisecond, so
# requests beyond READERS queue for one briefly. No overflow: a connection opened for a burst
# and closed after it costs PostgreSQL a backend fork and devprov a full connect (measured: 116
# of them in 2,000 registrations with 32 devices at a time). The store's single writer needs one
# connection; the other is for the retry of a failed batch, one operation at a time. A node
# holds at most READERS + WRITERS + DIRECT: size max_connections for the nodes (docs/deploying.md).
READERS = 3
WRITERS = 2
DIRECT = 6  # connections of the hot path's statements (DirectPostgres)
Parameters = Mapping[str, Any] | Sequence[Mapping[str, Any]] | None  # one row, or many
Statement = tuple[Executable, Mapping[str, Any]]  # a statement and its one row of parameters


def normalize_url(url: str) -> str:
    """Accept plain `sqlite:///` and `postgresql://` URLs and pick devprov's drivers for them
    (SQLite is always used synchronously, see connections.py)."""
    scheme, sep, rest = url.partition("://")
    if not sep:
        raise ValueError(f"Not a database URL: {url!r}")
    base = scheme.split("+", 1)[0].lower()
    if base == "sqlite":
        return f"sqlite://{rest}"
    if base in ("postgresql", "postgres"):
        return f"postgresql+psycopg://{rest}"
    raise ValueError(f"Unsupported database {scheme!r}: use sqlite:/// or postgresql://")


def sqlite_url(path: Path) -> str:
    return f"sqlite:///{path}"


class DbConnection(Protocol):
    """The part of a connection the store uses, whichever way it reaches the database."""

    async def execute(
        self, statement: Executable, parameters: Parameters = None
    ) -> CursorResult[Any]: ...


class Database(Protocol):
    dialect_name: str

    def connect(self) -> AbstractAsyncContextManager[DbConnection]:
        """A connection for reads (in autocommit: each statement is its own transaction)."""
        ...

    def begin(self) -> AbstractAsyncContextManager[DbConnection]:
        """A write transaction, committed when the block ends without an exception."""
        ...

    async def hot(self, statement: Executable, parameters: Mapping[str, Any]) -> Sequence[Any]:
        """Run one statement of the hot path on its own (autocommit) and answer its rows, whose
        columns read as attributes: by the shortest way this database allows."""
        ...

    async def dispose(self) -> None: ...


class AsyncDatabase:
    """PostgreSQL through psycopg's async driver.

    Reads run in autocommit on a pool of their own: no BEGIN, and no ROLLBACK when the
    connection goes back to the pool, so a lookup is one round trip, not three. So does a batch
    of plain upserts, as one statement (see Store._write_pending). Both pools are fixed in
    size (see READERS).

    Writes commit with synchronous_commit off: a commit does not wait for the WAL flush, so
    an operating-system crash (not a devprov or PostgreSQL crash) may lose the last fraction
    of a second of registrations, never consistency. That is the guarantee SQLite gives in
    WAL mode with synchronous=NORMAL, and it keeps the single writer from idling on fsync."""

    def __init__(self, url: str) -> None:
        self.engine = create_async_engine(url, pool_size=WRITERS, max_overflow=0)
        sa.event.listen(self.engine.sync_engine, "connect", _asynchronous_commit)
        self.reader = create_async_engine(
            url,
            pool_size=READERS,
            max_overflow=0,
            isolation_level="AUTOCOMMIT",
            # In autocommit no transaction is ever open: no rollback when a connection closes
            # or goes back to the pool (each was a trip through the driver's lock, for nothing).
            skip_autocommit_rollback=True,
            pool_reset_on_return=None,
        )
        sa.event.listen(self.reader.sync_engine, "connect", _asynchronous_commit)
        self.dialect_name = self.engine.dialect.name
        self.direct = DirectPostgres(url, self.engine.dialect)

    async def hot(self, statement: Executable, parameters: Mapping[str, Any]) -> Sequence[Any]:
        return await self.direct.run(statement, parameters)

    def connect(self) -> AbstractAsyncContextManager[DbConnection]:
        return self.reader.connect()

    def begin(self) -> AbstractAsyncContextManager[DbConnection]:
        return self.engine.begin()

    async def dispose(self) -> None:
        await self.direct.close()
        await self.reader.dispose()
        await self.engine.dispose()


class DirectPostgres:
    """The hot path's statements straight through psycopg, on connections of its own.

    A lookup through SQLAlchemy's asyncio layer costs some 570 Python calls (a greenlet per
    call, the pool, the result's processing); the same statement on a psycopg connection costs
    some 230, about what SQLite's inline lookup costs (200). So the statements a registration
    runs (its one read, its batch's one write) are compiled once by SQLAlchemy and then run
    here, prepared, in autocommit; everything else keeps using the engines."""

    def __init__(self, url: str, dialect: sa.Dialect) -> None:
        self.conninfo = sa.make_url(url).set(drivername="postgresql").render_as_string(False)
        self.dialect = dialect
        self.idle: list[psycopg.AsyncConnection[Any]] = []
        self.slots = asyncio.Semaphore(DIRECT)
        self.compiled: dict[int, tuple[Executable, str, dict[str, Any]]] = {}

    def _compile(self, statement: Executable) -> tuple[str, dict[str, Any]]:
        known = self.compiled.get(id(statement))
        if known is None or known[0] is not statement:
            compiled = statement.compile(dialect=self.dialect)  # type: ignore[attr-defined]
            known = (statement, str(compiled), dict(compiled.params))
            self.compiled[id(statement)] = known
        return known[1], known[2]

    async def run(self, statement: Executable, parameters: Mapping[str, Any]) -> Sequence[Any]:
        (rows,) = await self.pipeline([(statement, parameters)])
        return rows

    async def pipeline(self, statements: Sequence[Statement]) -> list[Sequence[Any]]:
        """Each statement's rows; several statements are sent in one round trip (psycopg's
        pipeline mode) and run in order, as one transaction, each seeing what those before it
        wrote and what other transactions had committed when it started."""
        compiled = [(self._compile(statement), parameters) for statement, parameters in statements]
        async with self.slots:
            connection = self.idle.pop() if self.idle else await self._open()
            try:
                if len(compiled) == 1:
                    cursors = [await self._execute(connection, *compiled[0])]
                else:
                    async with connection.pipeline():
                        cursors = [await self._execute(connection, *one) for one in compiled]
                results: list[Sequence[Any]] = [
                    await cursor.fetchall() if cursor.description else [] for cursor in cursors
                ]
            except BaseException:
                if connection.broken or connection.closed:
                    await connection.close()
                else:
                    self.idle.append(connection)
                raise
            self.idle.append(connection)
            return results

    @staticmethod
    async def _execute(
        connection: psycopg.AsyncConnection[Any],
        compiled: tuple[str, dict[str, Any]],
        parameters: Mapping[str, Any],
    ) -> psycopg.AsyncCursor[Any]:
        sql, defaults = compiled
        return await connection.execute(sql.encode(), {**defaults, **parameters}, prepare=True)

    async def _open(self) -> psycopg.AsyncConnection[Any]:
        connection = await psycopg.AsyncConnection.connect(
            self.conninfo, autocommit=True, row_factory=namedtuple_row
        )
        await connection.execute(b"SET synchronous_commit TO off")  # as the engines' (above)
        # Plan each execution for its own values (the statements stay parsed): a generic plan
        # made while a table was nearly empty (a new deployment, a new database) scans the
        # whole table, and would be kept for the connection's life as the table grows.
        await connection.execute(b"SET plan_cache_mode TO force_custom_plan")
        return connection

    async def close(self) -> None:
        while self.idle:
            await self.idle.pop().close()


class _Inline:
    """A synchronous connection behind the async interface (its calls never wait on I/O
    that another task could use: SQLite is a local file)."""

    def __init__(self, connection: sa.Connection) -> None:
        self.connection = connection

    async def execute(
        self, statement: Executable, parameters: Parameters = None
    ) -> CursorResult[Any]:
        return self.connection.execute(statement, parameters)


class InlineSqlite:
    """SQLite on the event loop's thread: a pool of readers and one writer.

    The writer takes the write lock when it begins (BEGIN IMMEDIATE), so the writers of
    several processes (`serve --workers`) queue in SQLite's busy handler instead of failing
    with SQLITE_BUSY_SNAPSHOT. Waiting for that lock is the one thing that may take long, so
    it alone happens on a thread; the statements and the commit then run inline."""

    dialect_name = "sqlite"

    def __init__(self, url: str) -> None:
        arguments = {"timeout": SQLITE_BUSY_SECONDS, "check_same_thread": False}
        self.reader = sa.create_engine(url, connect_args=arguments, pool_size=4)
        self.writer = sa.create_engine(url, connect_args=arguments, pool_size=1, max_overflow=0)
        sa.event.listen(self.reader, "connect", _tune)
        sa.event.listen(self.writer, "connect", _tune_writer)
        sa.event.listen(self.writer, "begin", _begin_immediate)

    @asynccontextmanager
    async def connect(self) -> AsyncIterator[DbConnection]:
        with self._sync(self.reader.connect) as connection:
            yield _Inline(connection)

    @asynccontextmanager
    async def begin(self) -> AsyncIterator[DbConnection]:
        with self._sync(self.writer.connect) as connection:
            transaction = await asyncio.to_thread(connection.begin)
            with transaction:
                yield _Inline(connection)

    @staticmethod
    @contextmanager
    def _sync(opener: Any) -> Iterator[sa.Connection]:
        with opener() as connection:
            yield connection

    async def hot(self, statement: Executable, parameters: Mapping[str, Any]) -> Sequence[Any]:
        with self.reader.connect() as connection:
            return connection.execute(statement, parameters).all()

    async def dispose(self) -> None:
        self.reader.dispose()
        self.writer.dispose()


def _asynchronous_commit(dbapi_connection: Any, _record: Any) -> None:
    dbapi_connection.run_async(_set_asynchronous_commit)


async def _set_asynchronous_commit(connection: Any) -> None:
    await connection.execute("SET synchronous_commit TO off")
    await connection.commit()


def _tune(dbapi_connection: Any, _record: Any) -> None:
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA synchronous=NORMAL")  # WAL: durable at checkpoints, no fsync per commit
    cursor.close()


def _tune_writer(dbapi_connection: Any, record: Any) -> None:
    """The writer controls its own transactions: pysqlite's implicit BEGIN is turned off so
    that BEGIN IMMEDIATE can be emitted."""
    _tune(dbapi_connection, record)
    dbapi_connection.isolation_level = None


def _begin_immediate(connection: sa.Connection) -> None:
    connection.exec_driver_sql("BEGIN IMMEDIATE")
