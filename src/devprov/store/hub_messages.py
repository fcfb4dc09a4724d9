"""The built-in hubs' device-to-cloud messages: appended in batches, kept per hub up to a bound.

Devices publish telemetry fast and must not wait for the database, so `append` only queues a
message; a task of the log's own writes what has queued in one transaction (through the store's
writer, so it shares commits with registrations). A hub keeps its newest `retention` messages;
older ones are dropped and counted, and so is anything that arrives while more than
`max_pending` wait to be written (the log then sheds load instead of growing without bound).
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import time
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite

from devprov.store import tables
from devprov.store.connections import DbConnection
from devprov.store.database import Store

log = logging.getLogger(__name__)
Document = dict[str, Any]
DEFAULT_RETENTION = 10_000
MAX_PENDING = 50_000
BATCH = 1_000
PRUNE_SECONDS = 5.0


@dataclass(frozen=True)
class Messages:
    """A page of a hub's messages, oldest first, and the hub's counts."""

    messages: list[tuple[int, Document]]
    received: int
    dropped: int


class StoredMessageLog:
    """The hub service's `MessageLog`, over the store."""

    def __init__(self, store: Store, retention: int = DEFAULT_RETENTION) -> None:
        self.store = store
        self.retention = retention
        self._pending: list[tuple[str, str, Document]] = []
        self._shed: dict[str, int] = {}
        self._wake = asyncio.Event()
        self._flushing = asyncio.Lock()
        self._task: asyncio.Task[None] | None = None

    def append(self, hub: str, device_id: str, message: Document) -> None:
        if len(self._pending) >= MAX_PENDING:
            self._shed[hub.lower()] = self._shed.get(hub.lower(), 0) + 1
            return
        self._pending.append((hub.lower(), device_id, message))
        self._wake.set()

    async def start(self) -> None:
        self._task = asyncio.create_task(self._write_forever())

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        await self.flush()

    async def flush(self) -> None:
        """Write everything queued so far, after any write already under way."""
        async with self._flushing:
            while self._pending or self._shed:
                batch, self._pending = self._pending[:BATCH], self._pending[BATCH:]
                shed, self._shed = self._shed, {}
                dialect = self.store.database.dialect_name
                insert = functools.partial(_insert, dialect=dialect, batch=batch, shed=shed)
                await self.store.run(insert)

    async def _write_forever(self) -> None:
        pruned_at = time.monotonic()
        while True:
            await self._wake.wait()
            self._wake.clear()
            try:
                await self.flush()
                if time.monotonic() - pruned_at > PRUNE_SECONDS:
                    pruned_at = time.monotonic()
                    await self.prune()
            except Exception:
                log.exception("could not write device-to-cloud messages")
                await asyncio.sleep(1)

    async def prune(self) -> int:
        """Drop each hub's messages beyond its newest `retention`; counts them as dropped."""
        dialect = self.store.database.dialect_name
        return await self.store.run(
            functools.partial(_prune, dialect=dialect, retention=self.retention)
        )


async def read_messages(store: Store, hub: str, after: int = 0, limit: int = 100) -> Messages:
    """A hub's messages with an id after `after`, oldest first (or the newest `limit` when
    `after` is 0)."""
    table, counts = tables.hub_messages, tables.hub_message_counts
    query = sa.select(table.c.id, table.c.document).where(table.c.hub_key == hub.lower())
    if after:
        query = query.where(table.c.id > after).order_by(table.c.id).limit(limit)
    else:
        query = query.order_by(table.c.id.desc()).limit(limit)
    async with store.database.connect() as connection:
        rows = (await connection.execute(query)).all()
        count = (
            await connection.execute(
                sa.select(counts.c.received, counts.c.dropped).where(
                    counts.c.hub_key == hub.lower()
                )
            )
        ).first()
    messages = sorted((row.id, row.document) for row in rows)
    return Messages(messages, count.received if count else 0, count.dropped if count else 0)


async def _insert(
    connection: DbConnection,
    *,
    dialect: str,
    batch: list[tuple[str, str, Document]],
    shed: dict[str, int],
) -> None:
    now = time.time()
    if batch:
        await connection.execute(
            sa.insert(tables.hub_messages),
            [
                {"hub_key": hub, "device_id": device, "enqueued_at": now, "document": message}
                for hub, device, message in batch
            ],
        )
    received: dict[str, int] = {}
    for hub, _, _ in batch:
        received[hub] = received.get(hub, 0) + 1
    for hub in received.keys() | shed.keys():
        total = received.get(hub, 0) + shed.get(hub, 0)
        await _count(connection, dialect, hub, total, shed.get(hub, 0))


async def _count(
    connection: DbConnection, dialect: str, hub: str, received: int, dropped: int
) -> None:
    table = tables.hub_message_counts
    insert = postgresql.insert if dialect == "postgresql" else sqlite.insert
    statement = insert(table).values(hub_key=hub, received=received, dropped=dropped)
    statement = statement.on_conflict_do_update(
        index_elements=["hub_key"],
        set_={
            "received": table.c.received + statement.excluded.received,
            "dropped": table.c.dropped + statement.excluded.dropped,
        },
    )
    await connection.execute(statement)


async def _prune(connection: DbConnection, *, dialect: str, retention: int) -> int:
    table = tables.hub_messages
    hubs = [row.hub_key for row in await connection.execute(sa.select(table.c.hub_key).distinct())]
    total = 0
    for hub in hubs:
        cut = (
            await connection.execute(
                sa.select(table.c.id)
                .where(table.c.hub_key == hub)
                .order_by(table.c.id.desc())
                .offset(retention)
                .limit(1)
            )
        ).scalar()
        if cut is None:
            continue
        deleted = await connection.execute(
            sa.delete(table).where(table.c.hub_key == hub, table.c.id <= cut)
        )
        if deleted.rowcount:
            total += deleted.rowcount
            await _count(connection, dialect, hub, 0, deleted.rowcount)
    return total
