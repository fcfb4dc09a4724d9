"""Observers see every recorded custom allocation exchange; a broken one fails nothing."""

from __future__ import annotations

from devprov.allocation.exchanges import ObservedExchanges
from devprov.domain.exchanges import Exchange


class Kept:
    def __init__(self) -> None:
        self.exchanges: list[Exchange] = []

    async def record(self, exchange: Exchange) -> None:
        self.exchanges.append(exchange)


def exchange() -> Exchange:
    return Exchange("dev-1", "enrollmentGroup", "fleet", "https://hook.example/", {"a": 1})


async def test_each_exchange_is_told_then_kept() -> None:
    kept, seen = Kept(), list[Exchange]()
    observed = ObservedExchanges(kept, [seen.append])
    await observed.record(exchange())
    assert [e.registration_id for e in seen] == ["dev-1"]
    assert [e.registration_id for e in kept.exchanges] == ["dev-1"]


async def test_an_observer_that_raises_does_not_keep_the_exchange_from_the_log() -> None:
    def broken(_: Exchange) -> None:
        raise RuntimeError("observer bug")

    kept = Kept()
    await ObservedExchanges(kept, [broken]).record(exchange())
    assert len(kept.exchanges) == 1
