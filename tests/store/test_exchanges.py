"""The exchange log on SQLite and PostgreSQL: recorded whole, newest first, bounded, filtered."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from devprov.domain.exchanges import Exchange, redact_url
from devprov.store import exchanges as stored_exchanges
from devprov.store.database import Store
from devprov.store.exchanges import StoredExchanges
from devprov.store.schema import migrate


@pytest.fixture
async def store(database_url: str) -> AsyncIterator[Store]:
    migrate(database_url)
    opened = Store.connect(database_url)
    yield opened
    await opened.close()


def exchange(number: int, *, group: str = "Kettles", failed: bool = False) -> Exchange:
    return Exchange(
        registration_id=f"Dev-{number % 3}",
        enrollment_kind="enrollmentGroup",
        enrollment_id=group,
        target="http://hook.example/allocate?code=***",
        request={"linkedHubs": ["a.example"], "deviceRuntimeContext": {"n": number}},
        answer={"iotHubHostName": "a.example"},
        status=503 if failed else 200,
        error={"errorCode": 400207, "message": "no"} if failed else None,
        duration_ms=1.5,
        attempts=[{"status": 200, "error": None, "ms": 1.2}],
        at=1_700_000_000 + number,
    )


async def test_recorded_whole_and_listed_newest_first(store: Store) -> None:
    log = StoredExchanges(store)
    for number in range(5):
        await log.record(exchange(number, failed=number == 3))
    toaster = exchange(9, group="toasters")
    await log.record(toaster)

    newest = await log.recent()
    kettles = await log.recent(enrollment="group:kettles")
    failed = await log.recent(failed=True)
    device = await log.recent(registration_id="dev-1")

    assert [e.request["deviceRuntimeContext"]["n"] for e in newest] == [9, 4, 3, 2, 1, 0]
    assert len(kettles) == 5
    assert [e.status for e in failed] == [503]
    assert {e.registration_id for e in device} == {"Dev-1"}
    assert await log.get(newest[0].id) == toaster
    assert await log.get("no-such-id") is None


async def test_each_enrollment_keeps_only_its_newest(
    store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(stored_exchanges, "PRUNE_EVERY", 4)
    log = StoredExchanges(store, keep=5)
    for number in range(20):
        await log.record(exchange(number))
    await log.record(exchange(100, group="other"))

    kept = await log.recent(enrollment="group:kettles", limit=100)

    assert len(kept) <= 5 + 4
    assert [e.request["deviceRuntimeContext"]["n"] for e in kept][:5] == [19, 18, 17, 16, 15]
    assert len(await log.recent(enrollment="group:other")) == 1


async def test_nothing_is_kept_when_the_log_is_off(store: Store) -> None:
    log = StoredExchanges(store, keep=0)
    await log.record(exchange(1))
    assert await log.recent() == []


def test_urls_lose_their_keys() -> None:
    assert (
        redact_url("https://user:pw@fn.example/api/alloc?code=abc&x=1&sig=zz")
        == "https://***@fn.example/api/alloc?code=***&x=1&sig=***"
    )
    assert redact_url("http://hook.example/allocate") == "http://hook.example/allocate"
