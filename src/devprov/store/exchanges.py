"""The log of custom allocation exchanges over the store: recorded, bounded per enrollment, read."""

from __future__ import annotations

from collections import Counter

import sqlalchemy as sa

from devprov.domain.exchanges import Exchange
from devprov.domain.ids import id_key
from devprov.domain.records import Kind, Put
from devprov.store import tables
from devprov.store.connections import DbConnection
from devprov.store.database import Store

DEFAULT_KEEP = 100
PRUNE_EVERY = 16  # records per enrollment (in this process) between two trims


class StoredExchanges:
    """`ExchangeLog` and `ExchangeReader` (allocation/exchanges.py) over the `exchanges` table.

    Each enrollment keeps its newest `keep` exchanges: a trim runs with every PRUNE_EVERY-th
    record of an enrollment, so at most `keep + PRUNE_EVERY` are held between trims."""

    def __init__(self, store: Store, keep: int = DEFAULT_KEEP) -> None:
        self.store = store
        self.keep = keep
        self._since_trim: Counter[str] = Counter()

    async def record(self, exchange: Exchange) -> None:
        if self.keep <= 0:
            return
        columns = {
            "enrollment_key": exchange.enrollment,
            "registration_key": id_key(exchange.registration_id),
            "outcome": "failed" if exchange.failed else "ok",
        }
        put = Put(Kind.EXCHANGE, exchange.id, exchange.id, exchange.to_document(), columns)
        self._since_trim[exchange.enrollment] += 1
        if self._since_trim[exchange.enrollment] < PRUNE_EVERY:
            await self.store.write([put])
            return
        self._since_trim[exchange.enrollment] = 0
        await self.store.write([put])
        await self.store.run(lambda connection: self._trim(connection, exchange.enrollment))

    async def _trim(self, connection: DbConnection, enrollment: str) -> None:
        table = tables.exchanges
        newest_kept = (
            sa.select(table.c.key)
            .where(table.c.enrollment_key == enrollment)
            .order_by(table.c.key.desc())
            .limit(1)
            .offset(self.keep - 1)
            .scalar_subquery()
        )
        await connection.execute(
            sa.delete(table).where(table.c.enrollment_key == enrollment, table.c.key < newest_kept)
        )

    async def recent(
        self,
        *,
        enrollment: str | None = None,
        registration_id: str | None = None,
        failed: bool = False,
        limit: int = 50,
    ) -> list[Exchange]:
        table = tables.exchanges
        query = sa.select(table.c.document).order_by(table.c.key.desc()).limit(limit)
        if enrollment is not None:
            query = query.where(table.c.enrollment_key == enrollment.lower())
        if registration_id is not None:
            query = query.where(table.c.registration_key == id_key(registration_id))
        if failed:
            query = query.where(table.c.outcome == "failed")
        async with self.store.database.connect() as connection:
            rows = (await connection.execute(query)).all()
        return [Exchange.from_document(row.document) for row in rows]

    async def get(self, exchange_id: str) -> Exchange | None:
        stored = await self.store.get(Kind.EXCHANGE, exchange_id)
        return Exchange.from_document(stored.document) if stored else None
