"""The log of custom allocation exchanges: the ports the custom policy writes to and readers
(the CLI, a console) read from; the store implements both (store/exchanges.py)."""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable
from typing import Protocol

from devprov.domain.exchanges import Exchange

log = logging.getLogger(__name__)
ExchangeObserver = Callable[[Exchange], None]
"""Told of each exchange as it is recorded (metrics, the console); must be quick."""


class ExchangeLog(Protocol):
    """Where every webhook and in-process allocator exchange is kept, bounded per enrollment."""

    async def record(self, exchange: Exchange) -> None: ...


class ExchangeReader(Protocol):
    """Recent exchanges, newest first, for `devprov webhook log` or a registration's page."""

    async def recent(
        self,
        *,
        enrollment: str | None = None,
        registration_id: str | None = None,
        failed: bool = False,
        limit: int = 50,
    ) -> list[Exchange]:
        """`enrollment` is `enrollment:ID` or `group:ID` (see domain.exchanges.enrollment_key)."""
        ...

    async def get(self, exchange_id: str) -> Exchange | None: ...


class ObservedExchanges:
    """An exchange log that also tells observers of each exchange (an observer's failure is
    logged, never the device's)."""

    def __init__(self, exchanges: ExchangeLog, observers: Iterable[ExchangeObserver]) -> None:
        self.exchanges = exchanges
        self.observers = list(observers)

    async def record(self, exchange: Exchange) -> None:
        for observer in self.observers:
            try:
                observer(exchange)
            except Exception:
                log.exception("exchange observer %r failed", observer)
        await self.exchanges.record(exchange)
