"""Operations left `assigning` by a node that stopped: found by age, and failed (500001).

A registration that outlives the fast path is written `assigning` and finished by the task of the
node that took it. Should that node die (SIGKILL, a lost machine), nothing else would finish it
and its device would poll `assigning` for ever. Every node therefore sweeps, now and then, the
operations still `assigning` after a deadline no live registration can reach (the webhook's
and the hub connector's timeouts are shorter) and fails them, so the device registers again.
Failing is a compare-and-set on the record: a result saved meanwhile is kept.

This is the minimal piece the cluster work needs; a per-node lease (who owns which operation)
would let a survivor act sooner, and would replace the age rule here.
"""

from __future__ import annotations

import time
from typing import Any

import sqlalchemy as sa

from devprov.domain.clock import new_etag, now_timestamp
from devprov.domain.errors import ORPHANED_OPERATION
from devprov.domain.records import Kind, Put, StoredDocument
from devprov.store.database import Store
from devprov.store.tables import operations

ASSIGNING = "assigning"
BATCH = 500


async def fail_orphaned(store: Store, older_than_seconds: float) -> int:
    """Fail the operations `assigning` for longer than `older_than_seconds`; answers how many."""
    cutoff = time.time() - older_than_seconds
    query = (
        sa.select(operations.c.key)
        .where(operations.c.state == ASSIGNING, operations.c.updated_at < cutoff)
        .limit(BATCH)
    )
    async with store.database.connect() as connection:
        keys = [row.key for row in await connection.execute(query)]
    failed = 0
    for key in keys:
        if await store.update(Kind.OPERATION, key, _failed) is not None:
            failed += 1
    return failed


def _failed(current: StoredDocument | None) -> Put | None:
    if current is None or current.document.get("status") != ASSIGNING:
        return None  # finished meanwhile (or pruned): its own result stands
    state: dict[str, Any] = dict(current.document.get("registrationState") or {})
    registration_id = state.get("registrationId", "")
    state.update(
        status="failed",
        errorCode=ORPHANED_OPERATION,
        errorMessage="The node running this registration stopped before it ended; register again.",
        lastUpdatedDateTimeUtc=now_timestamp(),
    )
    document = {**current.document, "status": "failed", "registrationState": state}
    columns = {"registration_key": registration_id.lower(), "state": "failed"}
    return Put(Kind.OPERATION, current.key, new_etag(), document, columns)
