"""Registration claims, records and operations in the store (SQLite and PostgreSQL)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest

from devprov.domain.claims import Claim
from devprov.store.database import Store
from devprov.store.registrations import StoredClaims, StoredOperations, StoredRegistrations
from devprov.store.schema import migrate


@pytest.fixture
async def store(database_url: str) -> AsyncIterator[Store]:
    migrate(database_url)
    opened = Store.connect(database_url)
    yield opened
    await opened.close()


async def test_a_live_claim_holds_its_registration_id_and_its_device_id(store: Store) -> None:
    claims = StoredClaims(store)
    mine = await claims.take("Dev-1", "Shared", "op-1", 60)
    assert mine == Claim("Dev-1", "Shared", "op-1")

    assert await claims.take("dev-1", "other", "op-2", 60) is None  # same id, any case
    assert await claims.take("dev-2", "shared", "op-3", 60) is None  # same device id
    assert await claims.take("dev-2", "free", "op-4", 60) is not None

    await claims.release(mine)
    assert await claims.take("dev-1", "shared", "op-5", 60) is not None


async def test_an_expired_claim_is_taken_over_with_its_device_to_clean_up(store: Store) -> None:
    claims = StoredClaims(store)
    await claims.take("dev-1", "old-device", "killed", -1)
    assert await claims.expired() == [("dev-1", "old-device")]

    taken = await claims.take("dev-1", "new-device", "op-2", 60)

    assert taken is not None and taken.stale_devices == ("old-device",)
    assert await claims.expired() == []


async def test_claims_raced_from_many_tasks_go_to_one(store: Store) -> None:
    claims = StoredClaims(store)
    won = await asyncio.gather(*(claims.take("dev-1", "dev-1", f"op-{n}", 60) for n in range(20)))
    assert sum(claim is not None for claim in won) == 1


async def test_saving_the_record_lets_the_claim_go_or_leaves_it_to_the_sweep(
    store: Store,
) -> None:
    claims, records = StoredClaims(store), StoredRegistrations(store)
    record = {"registrationId": "dev-1", "assignedHub": "Hub.Example", "deviceId": "Dev-1"}
    claim = await claims.take("dev-1", "dev-1", "op-1", 60)
    assert claim is not None

    await records.save(record, None, "op-1", claim, settled=False)

    assert await claims.expired() == [("dev-1", "dev-1")]  # expired now, for the sweep
    assert await records.holders("hub.example", "dev-1") == ["dev-1"]
    claim = await claims.take("dev-1", "dev-1", "op-2", 60)
    assert claim is not None
    await records.save(record, None, "op-2", claim)
    assert await claims.take("dev-1", "dev-1", "op-3", 60) is not None


async def test_orphaned_operations_are_found_and_settled_once(store: Store) -> None:
    operations = StoredOperations(store)
    await operations.save("op-1", "dev-1", {"operationId": "op-1", "status": "assigning"})
    await operations.save("op-2", "dev-2", {"operationId": "op-2", "status": "assigned"})
    assert await operations.orphaned(before=0) == []

    (found,) = await operations.orphaned(before=float("inf"))
    operation_id, registration_id, etag = found
    assert (operation_id, registration_id) == ("op-1", "dev-1")

    failed = {"operationId": "op-1", "status": "failed"}
    assert await operations.settle(operation_id, etag, failed)
    assert not await operations.settle(operation_id, etag, failed)  # the etag moved on
    assert await operations.orphaned(before=float("inf")) == []
    assert await operations.read("op-1") == failed


async def test_claims_taken_together_each_carry_what_they_guard(store: Store) -> None:
    claims, records = StoredClaims(store), StoredRegistrations(store)
    for n in range(3):
        record = {"registrationId": f"dev-{n}", "assignedHub": "Hub", "deviceId": f"dev-{n}"}
        await records.save(record, None, "op-0")

    taken = await asyncio.gather(*(claims.take(f"dev-{n}", f"dev-{n}", "op", 60) for n in range(5)))

    for n, claim in enumerate(taken):
        assert claim is not None
        assert claim.record == ({"registrationId": f"dev-{n}", "assignedHub": "Hub",
                                 "deviceId": f"dev-{n}"} if n < 3 else None)  # fmt: skip
        assert claim.device_holders == (((f"dev-{n}", "hub"),) if n < 3 else ())


async def test_a_claim_sees_the_records_of_other_registrations_naming_its_device(
    store: Store,
) -> None:
    claims, records = StoredClaims(store), StoredRegistrations(store)
    await records.save(
        {"registrationId": "old", "assignedHub": "Hub", "deviceId": "Shared"}, None, "op-0"
    )

    shared, alone = await asyncio.gather(
        claims.take("new", "shared", "op-1", 60), claims.take("shared", "other", "op-2", 60)
    )

    assert shared is not None and shared.record is None
    assert shared.holders_on("HUB") == ["old"]
    assert alone is not None and alone.device_holders == ()  # its key is a device id, not its own
