"""Operations a stopped node left `assigning` are failed once past the deadline, and only those."""

from __future__ import annotations

import time

import sqlalchemy as sa

from devprov.domain.errors import ORPHANED_OPERATION
from devprov.store.database import Store
from devprov.store.orphaned_operations import fail_orphaned
from devprov.store.registrations import StoredOperations
from devprov.store.schema import migrate
from devprov.store.tables import operations


async def test_old_assigning_operations_are_failed_and_finished_ones_kept(
    database_url: str,
) -> None:
    migrate(database_url)
    store = Store.connect(database_url)
    try:
        saved = StoredOperations(store)

        def assigning(op: str, device: str) -> dict[str, object]:
            state = {"registrationId": device, "status": "assigning"}
            return {"operationId": op, "status": "assigning", "registrationState": state}

        await saved.save("op-old", "Dev-1", assigning("op-old", "Dev-1"))
        await saved.save("op-new", "dev-2", assigning("op-new", "dev-2"))
        await saved.save("op-done", "dev-3", {"operationId": "op-done", "status": "assigned"})
        async with store.database.begin() as connection:  # op-old and op-done: long ago
            await connection.execute(
                sa.update(operations)
                .where(operations.c.key.in_(["op-old", "op-done"]))
                .values(updated_at=time.time() - 3600)
            )
        assert await fail_orphaned(store, 600) == 1
        old = await saved.read("op-old")
        assert old is not None and old["status"] == "failed"
        assert old["registrationState"]["errorCode"] == ORPHANED_OPERATION
        assert old["registrationState"]["registrationId"] == "Dev-1"
        assert (await saved.read("op-new") or {})["status"] == "assigning"
        assert (await saved.read("op-done") or {})["status"] == "assigned"
        assert await fail_orphaned(store, 600) == 0  # nothing left to fail
    finally:
        await store.close()
