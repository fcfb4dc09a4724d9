"""The store on SQLite and PostgreSQL: create, replace with If-Match, delete, pages, batches."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from typing import Any

import pytest
import sqlalchemy as sa

from devprov.domain.errors import DpsError
from devprov.domain.records import Kind, Put, StoredDocument
from devprov.store.connections import normalize_url
from devprov.store.database import Store, strip_etag
from devprov.store.schema import migrate


def migrated(url: str) -> Store:
    migrate(url)
    return Store.connect(url)


@pytest.fixture
async def store(database_url: str) -> AsyncIterator[Store]:
    opened = migrated(database_url)
    yield opened
    await opened.close()


def put(key: str, etag: str = "e1", kind: Kind = Kind.ENROLLMENT, **document: Any) -> Put:
    return Put(kind, key, etag, {"id": key, **document})


async def test_create_then_get(store: Store) -> None:
    await store.create(put("dev-1", "etag-1", nested={"list": [1, "two", None]}))
    stored = await store.get(Kind.ENROLLMENT, "dev-1")
    assert stored is not None
    assert (stored.key, stored.etag) == ("dev-1", "etag-1")
    assert stored.document == {"id": "dev-1", "nested": {"list": [1, "two", None]}}
    assert await store.get(Kind.ENROLLMENT, "dev-2") is None
    assert await store.get(Kind.GROUP, "dev-1") is None


async def test_create_of_an_existing_key_is_409201(store: Store) -> None:
    await store.create(put("dev-1", "first"))
    with pytest.raises(DpsError) as caught:
        await store.create(put("dev-1", "second"))
    assert (caught.value.status, caught.value.error_code) == (409, 409201)
    stored = await store.get(Kind.ENROLLMENT, "dev-1")
    assert stored is not None and stored.etag == "first"


async def test_replace_without_if_match_upserts(store: Store) -> None:
    assert await store.replace(put("dev-1", "e1"), None) is True
    assert await store.replace(put("dev-1", "e2", v=2), None) is False
    stored = await store.get(Kind.ENROLLMENT, "dev-1")
    assert stored is not None and (stored.etag, stored.document["v"]) == ("e2", 2)


async def test_replace_accepts_every_if_match_form(store: Store) -> None:
    for number, if_match in enumerate(["e1", '"e1"', 'W/"e1"', "*", '"*"', " e1 "]):
        key = f"dev-{number}"
        await store.create(put(key, "e1", v=1))
        assert await store.replace(put(key, "e2", v=2), if_match) is False, if_match
        stored = await store.get(Kind.ENROLLMENT, key)
        assert stored is not None and (stored.etag, stored.document["v"]) == ("e2", 2), if_match


async def test_replace_with_a_stale_etag_is_412001(store: Store) -> None:
    await store.create(put("dev-1", "e1", v=1))
    for if_match in ("stale", '"stale"', 'W/"stale"', "e2"):
        with pytest.raises(DpsError) as caught:
            await store.replace(put("dev-1", "e2", v=2), if_match)
        assert (caught.value.status, caught.value.error_code) == (412, 412001)
    stored = await store.get(Kind.ENROLLMENT, "dev-1")
    assert stored is not None and (stored.etag, stored.document["v"]) == ("e1", 1)
    with pytest.raises(DpsError) as caught:
        await store.replace(put("missing", "e2"), "e1")
    assert caught.value.error_code == 412001
    assert await store.get(Kind.ENROLLMENT, "missing") is None


async def test_delete(store: Store) -> None:
    await store.create(put("a", "ea"))
    await store.create(put("b", "eb"))
    await store.create(put("c", "ec"))
    assert await store.delete(Kind.ENROLLMENT, "a") is True
    assert await store.delete(Kind.ENROLLMENT, "a") is False
    assert await store.delete(Kind.ENROLLMENT, "b", '"eb"') is True
    assert await store.delete(Kind.ENROLLMENT, "c", "*") is True
    assert await store.delete(Kind.ENROLLMENT, "missing", "some-etag") is False
    assert await store.count(Kind.ENROLLMENT) == 0


async def test_delete_with_a_stale_etag_is_412_and_the_record_remains(store: Store) -> None:
    await store.create(put("dev-1", "e1"))
    for stale in ("e0", '"e0"', 'W/"e0"'):
        with pytest.raises(DpsError) as caught:
            await store.delete(Kind.ENROLLMENT, "dev-1", stale)
        assert (caught.value.status, caught.value.error_code) == (412, 412001)
    stored = await store.get(Kind.ENROLLMENT, "dev-1")
    assert stored is not None and stored.etag == "e1"


async def test_pages_are_in_key_order_and_resume_after_a_key(store: Store) -> None:
    keys = ["m", "a", "z", "b", "k", "c"]
    for key in keys:
        await store.create(put(key))
    await store.create(put("other", kind=Kind.GROUP))
    everything = await store.page(Kind.ENROLLMENT)
    assert [row.key for row in everything] == sorted(keys)
    first = await store.page(Kind.ENROLLMENT, limit=4)
    assert [row.key for row in first] == ["a", "b", "c", "k"]
    rest = await store.page(Kind.ENROLLMENT, after=first[-1].key, limit=4)
    assert [row.key for row in rest] == ["m", "z"]
    assert await store.page(Kind.ENROLLMENT, after="z") == []
    assert [row.key for row in await store.page(Kind.ENROLLMENT, after="bb")] == [
        "c",
        "k",
        "m",
        "z",
    ]
    assert await store.count(Kind.ENROLLMENT) == len(keys)
    assert await store.count(Kind.GROUP) == 1


async def test_where_filters_on_lookup_columns(store: Store) -> None:
    await store.write(
        [
            Put(Kind.REGISTRATION, "d1", "e", {"r": 1}, {"group_key": "g1"}),
            Put(Kind.REGISTRATION, "d2", "e", {"r": 2}, {"group_key": "g2"}),
            Put(Kind.REGISTRATION, "d3", "e", {"r": 3}, {"group_key": "g1"}),
            Put(Kind.REGISTRATION, "d4", "e", {"r": 4}, {"group_key": None}),
        ]
    )
    g1 = await store.page(Kind.REGISTRATION, where={"group_key": "g1"})
    assert [row.document["r"] for row in g1] == [1, 3]
    assert [
        row.key
        for row in await store.page(Kind.REGISTRATION, where={"group_key": "g1"}, after="d1")
    ] == ["d3"]
    assert await store.page(Kind.REGISTRATION, where={"group_key": "g9"}) == []
    assert await store.count(Kind.REGISTRATION) == 4


async def test_write_upserts_a_batch(store: Store) -> None:
    await store.create(put("a", "old", v=0))
    await store.write([put("a", "new", v=1), put("b", "new", v=2, kind=Kind.GROUP)])
    a = await store.get(Kind.ENROLLMENT, "a")
    b = await store.get(Kind.GROUP, "b")
    assert a is not None and (a.etag, a.document["v"]) == ("new", 1)
    assert b is not None and b.document["v"] == 2


async def test_write_is_atomic_when_a_document_cannot_be_stored(store: Store) -> None:
    await store.create(put("kept", "old", v=0))
    bad = Put(Kind.GROUP, "bad", "e", {"not json": {1, 2, 3}})
    with pytest.raises((TypeError, sa.exc.StatementError)):
        await store.write([put("first", "e"), put("kept", "new", v=1), bad])
    assert await store.get(Kind.ENROLLMENT, "first") is None
    kept = await store.get(Kind.ENROLLMENT, "kept")
    assert kept is not None and (kept.etag, kept.document["v"]) == ("old", 0)
    assert await store.count(Kind.GROUP) == 0


async def test_write_is_atomic_when_the_database_refuses_a_row(
    store: Store, database_url: str
) -> None:
    """The second row breaks a constraint the database itself enforces."""
    if database_url.startswith("postgresql"):
        bad = put("k" * 300)  # longer than the key column's 256
    else:
        bad = Put(Kind.OPERATION, "op", "e", {}, {"registration_key": None})  # NOT NULL
    with pytest.raises(sa.exc.DBAPIError):
        await store.write([put("first", "e"), bad])
    assert await store.get(Kind.ENROLLMENT, "first") is None
    assert await store.count(Kind.ENROLLMENT) == 0
    assert await store.count(Kind.OPERATION) == 0


async def test_migrate_twice_is_harmless(database_url: str) -> None:
    migrate(database_url)
    store = migrated(database_url)  # migrates again
    try:
        await store.create(put("dev-1"))
    finally:
        await store.close()
    migrate(database_url)
    again = Store.connect(database_url)
    try:
        assert [row.key for row in await again.page(Kind.ENROLLMENT)] == ["dev-1"]
    finally:
        await again.close()


def test_strip_etag() -> None:
    assert strip_etag("abc") == "abc"
    assert strip_etag('"abc"') == "abc"
    assert strip_etag('W/"abc"') == "abc"
    assert strip_etag(' "abc" ') == "abc"
    assert strip_etag("*") == "*"


def test_normalize_url() -> None:
    assert normalize_url("sqlite:////tmp/x.db") == "sqlite:////tmp/x.db"
    assert normalize_url("sqlite:////tmp/x.db") == "sqlite:////tmp/x.db"
    assert normalize_url("postgres://u@h/db") == "postgresql+psycopg://u@h/db"
    assert normalize_url("postgresql+asyncpg://u@h/db") == "postgresql+psycopg://u@h/db"
    for bad in ("mysql://u@h/db", "not a url"):
        with pytest.raises(ValueError):
            normalize_url(bad)


async def test_prune_deletes_only_what_was_written_before_the_cutoff(database_url: str) -> None:
    store = migrated(database_url)
    try:
        await store.write([Put(Kind.OPERATION, "old", "e", {}, {"registration_key": "r"})])
        cutoff = time.time()
        await asyncio.sleep(0.01)
        await store.write([Put(Kind.OPERATION, "new", "e", {}, {"registration_key": "r"})])
        assert await store.prune(Kind.OPERATION, cutoff) == 1
        assert [row.key for row in await store.page(Kind.OPERATION)] == ["new"]
    finally:
        await store.close()


async def test_update_reads_and_writes_in_one_transaction(store: Store) -> None:
    seen: list[StoredDocument | None] = []

    def count(current: StoredDocument | None) -> Put:
        seen.append(current)
        value = current.document["n"] + 1 if current else 1
        return put("counter", f"e{value}", n=value)

    await asyncio.gather(*(store.update(Kind.ENROLLMENT, "counter", count) for _ in range(20)))

    stored = await store.get(Kind.ENROLLMENT, "counter")
    assert stored is not None and stored.document["n"] == 20  # no update was lost
    assert seen[0] is None


async def test_update_that_changes_nothing_writes_nothing(store: Store) -> None:
    await store.create(put("kept", "e1", n=1))
    assert await store.update(Kind.ENROLLMENT, "kept", lambda current: None) is None
    stored = await store.get(Kind.ENROLLMENT, "kept")
    assert stored is not None and stored.etag == "e1"


async def test_a_prefix_lists_and_counts_the_keys_that_start_with_it(store: Store) -> None:
    keys = ["dev", "dev-1", "dev-10", "dev-2", "dew", "de", "sensor-1", "dev\u00e9"]
    await store.write([put(key) for key in keys])
    listed = await store.page(Kind.ENROLLMENT, prefix="dev-")
    assert [row.key for row in listed] == ["dev-1", "dev-10", "dev-2"]
    assert [row.key for row in await store.page(Kind.ENROLLMENT, prefix="dev", limit=2)] == [
        "dev",
        "dev-1",
    ]
    paged = await store.page(Kind.ENROLLMENT, prefix="dev", after="dev-2")
    assert [row.key for row in paged] == ["dev\u00e9"]
    assert await store.count(Kind.ENROLLMENT, prefix="dev") == 5
    assert await store.count(Kind.ENROLLMENT, prefix="x") == 0


async def test_count_by_a_lookup_column(store: Store) -> None:
    await store.write(
        [Put(Kind.HUB_DEVICE, f"h{n}/d{n}", "e", {}, {"hub_key": f"hub-{n % 2}"}) for n in range(5)]
    )
    assert await store.count_by(Kind.HUB_DEVICE, "hub_key") == {"hub-0": 3, "hub-1": 2}
    assert await store.count(Kind.HUB_DEVICE, where={"hub_key": "hub-1"}) == 2


async def test_the_schema_revision_is_readable_and_batches_are_told(store: Store) -> None:
    from devprov.store.schema import head_revision

    assert await store.schema_revision() == head_revision()
    batches: list[tuple[int, float]] = []
    store.on_batch = lambda size, seconds: batches.append((size, seconds))
    await asyncio.gather(*(store.write([put(f"k{n}")]) for n in range(5)))
    assert sum(size for size, _ in batches) == 5
    assert all(seconds >= 0 for _, seconds in batches)


def test_a_prefix_page_reads_a_range_of_the_key_index() -> None:
    """On SQLite, a prefix search is an index range, not a scan (it must stay fast with
    100,000 records: the plan shows it, without timing anything)."""
    from sqlalchemy.dialects import sqlite

    from devprov.store.database import _filtered
    from devprov.store.tables import table_of

    table = table_of(Kind.ENROLLMENT)
    query = _filtered(sa.select(table.c.key, table.c.document), Kind.ENROLLMENT, None, "dev-")
    query = query.order_by(table.c.key).limit(51)
    sql = str(query.compile(dialect=sqlite.dialect(), compile_kwargs={"literal_binds": True}))
    engine = sa.create_engine("sqlite://")
    from devprov.store.tables import metadata

    metadata.create_all(engine)
    with engine.connect() as connection:
        plan = " ".join(str(row) for row in connection.exec_driver_sql("EXPLAIN QUERY PLAN " + sql))
    assert "USING INDEX" in plan and "key>" in plan.replace(" ", ""), plan


async def test_a_batch_of_registration_writes_lands_whole_and_the_last_write_of_a_key_wins(
    store: Store, database_url: str
) -> None:
    """What registrations write under load (records and hub devices, kinds no cache watches)
    goes to PostgreSQL as one statement: it must keep every row of every write, the last of
    two writes of one key, and fail only the write the database refuses."""

    def record(key: str, value: int) -> Put:
        return Put(Kind.REGISTRATION, key, f"e{value}", {"v": value}, {"group_key": "g"})

    def device(key: str, value: int) -> Put:
        return Put(Kind.HUB_DEVICE, key, f"e{value}", {"v": value}, {"hub_key": "h"})

    written = await asyncio.gather(
        store.write([record("r1", 1), device("h/r1", 1)]),
        store.write([record("r2", 2), device("h/r2", 2)]),
        store.write([record("r1", 3)]),
        store.write([record("k" * 300, 4)]),  # longer than the key column (PostgreSQL only)
        return_exceptions=True,
    )
    refused = isinstance(written[3], Exception)
    assert refused == database_url.startswith("postgresql")
    assert all(outcome is None for outcome in written[:3])
    r1, r2 = await store.get(Kind.REGISTRATION, "r1"), await store.get(Kind.REGISTRATION, "r2")
    assert r1 is not None and (r1.etag, r1.document) == ("e3", {"v": 3})
    assert r2 is not None and r2.document == {"v": 2}
    assert await store.count(Kind.HUB_DEVICE) == 2
    assert await store.count(Kind.REGISTRATION, where={"group_key": "g"}) == (2 if refused else 3)
