"""The audit trail in the store: appended through the writer (sharing its commits), read newest
first, pruned by age."""

from __future__ import annotations

import time

import sqlalchemy as sa

from devprov.domain.audit import AuditEntry
from devprov.store import tables
from devprov.store.connections import DbConnection
from devprov.store.database import Store

DEFAULT_RETENTION_DAYS = 90.0
MAX_LIMIT = 1000


def _clip(value: str | None, size: int) -> str | None:
    return None if value is None else value[:size]


class StoredAudit:
    """The `AuditLog` over the store; entries older than `retention_days` are pruned."""

    def __init__(self, store: Store, retention_days: float = DEFAULT_RETENTION_DAYS) -> None:
        self.store = store
        self.retention_days = retention_days

    async def record(self, entry: AuditEntry) -> None:
        row = {
            "at": entry.at,
            "who": _clip(entry.who, 256),
            "method": _clip(entry.method, 16),
            "path": _clip(entry.path, 1024),
            "resource": _clip(entry.resource, 512),
            "status": entry.status,
            "peer": _clip(entry.peer, 256),
        }

        async def insert(connection: DbConnection) -> None:
            await connection.execute(sa.insert(tables.audit).values(**row))

        await self.store.run(insert)

    async def entries(self, since: float | None = None, limit: int = 100) -> list[AuditEntry]:
        table = tables.audit
        query = sa.select(table).order_by(table.c.id.desc()).limit(max(1, min(limit, MAX_LIMIT)))
        if since is not None:  # times are shown to the microsecond: `since` a shown one holds it
            query = query.where(table.c.at >= since - 1e-6)
        async with self.store.database.connect() as connection:
            rows = (await connection.execute(query)).all()
        return [
            AuditEntry(
                row.at, row.who, row.method, row.path, row.resource, row.status, row.peer, row.id
            )
            for row in rows
        ]

    async def prune(self, now: float | None = None) -> int:
        """Forget the entries older than the retention; how many."""
        cutoff = (now or time.time()) - self.retention_days * 86400
        table = tables.audit

        async def delete(connection: DbConnection) -> int:
            result = await connection.execute(sa.delete(table).where(table.c.at < cutoff))
            return int(result.rowcount or 0)

        return await self.store.run(delete)
