"""What the console shows of the recent past, kept in memory by each process.

`Activity` is a registration observer and a webhook-exchange observer. It keeps counts per
minute for the last hour, outcomes by errorCode, webhook latencies and failures, each hub
connector's health, the last registrations in detail (`Journal`) and fans outcomes out to the
live feed (`Feed`). With several workers each keeps its own; the console shows the one that
answered.
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter, OrderedDict, deque
from dataclasses import dataclass, field
from typing import Any, Protocol

from devprov.domain.errors import HUB_CONNECTOR_FAILED
from devprov.domain.exchanges import Exchange
from devprov.registration.observe import RegistrationEvent

MINUTES = 60
JOURNAL_SIZE = 2000
FEED_QUEUE = 512
_OUTCOMES = ("assigned", "failed", "refused")


@dataclass
class JournalEntry:
    """A registration as it went, for its console page: the outcome event, the attestation's
    seconds and the webhook exchanges it made (as sent: the page removes secrets)."""

    event: RegistrationEvent
    at: float
    attestation_seconds: float | None = None
    exchanges: list[Exchange] = field(default_factory=list)


class RegistrationJournal(Protocol):
    """Recent registrations in detail (a persistent record may implement this later)."""

    def entry(self, registration_id: str) -> JournalEntry | None: ...

    def recent(self, limit: int) -> list[JournalEntry]: ...


class Journal:
    """The last `size` registrations (the latest attempt of each id), in memory."""

    def __init__(self, size: int = JOURNAL_SIZE) -> None:
        self.size = size
        self._entries: OrderedDict[str, JournalEntry] = OrderedDict()
        self._attested: OrderedDict[str, float] = OrderedDict()
        self._exchanges: OrderedDict[str, list[Exchange]] = OrderedDict()

    def attested(self, event: RegistrationEvent) -> None:
        self._attested[event.registration_id.lower()] = event.seconds
        if len(self._attested) > self.size:
            self._attested.popitem(last=False)

    def exchange(self, registration_id: str, exchange: Exchange) -> None:
        self._exchanges.setdefault(registration_id.lower(), []).append(exchange)
        if len(self._exchanges) > self.size:
            self._exchanges.popitem(last=False)

    def outcome(self, event: RegistrationEvent, at: float) -> JournalEntry:
        key = event.registration_id.lower()
        entry = JournalEntry(
            event,
            at,
            self._attested.pop(key, None) if event.kind != "refused" else event.seconds,
            self._exchanges.pop(key, []),
        )
        self._entries[key] = entry
        self._entries.move_to_end(key)
        if len(self._entries) > self.size:
            self._entries.popitem(last=False)
        return entry

    def entry(self, registration_id: str) -> JournalEntry | None:
        return self._entries.get(registration_id.lower())

    def recent(self, limit: int) -> list[JournalEntry]:
        entries = list(reversed(self._entries.values()))
        return entries[:limit]


def feed_item(entry: JournalEntry) -> dict[str, Any]:
    """What the live feed shows of a registration."""
    event = entry.event
    request = event.request
    return {
        "registrationId": event.registration_id,
        "outcome": event.kind,
        "at": entry.at,
        "hub": event.hub,
        "enrollmentGroup": event.enrollment,
        "attestation": event.attestation,
        "transport": request.transport if request else None,
        "errorCode": event.error.error_code if event.error else None,
        "error": event.error.message if event.error else None,
        "ms": round(event.seconds * 1000, 1),
    }


class Feed:
    """Outcomes, fanned out to each open live feed (a bounded queue each: a slow reader
    misses items rather than slowing registrations down)."""

    def __init__(self) -> None:
        self._queues: set[asyncio.Queue[dict[str, Any] | None]] = set()

    def __bool__(self) -> bool:
        return bool(self._queues)

    def subscribe(self) -> asyncio.Queue[dict[str, Any] | None]:
        queue: asyncio.Queue[dict[str, Any] | None] = asyncio.Queue(FEED_QUEUE)
        self._queues.add(queue)
        return queue

    def unsubscribe(self, queue: asyncio.Queue[dict[str, Any] | None]) -> None:
        self._queues.discard(queue)

    def publish(self, item: dict[str, Any]) -> None:
        for queue in self._queues:
            if not queue.full():
                queue.put_nowait(item)

    def close(self) -> None:
        """End every open feed (devprov is stopping)."""
        for queue in self._queues:
            while queue.full():
                queue.get_nowait()
            queue.put_nowait(None)


@dataclass
class HubHealth:
    placed: int = 0
    failed: int = 0
    last_ok: float | None = None
    last_failure: float | None = None
    last_error: str | None = None

    @property
    def healthy(self) -> bool:
        return self.last_failure is None or (self.last_ok or 0) > self.last_failure


class Activity:
    """The observers behind the console's overview, registration pages and live feed."""

    def __init__(self, journal_size: int = JOURNAL_SIZE) -> None:
        self.started = time.time()
        self.journal = Journal(journal_size)
        self.feed = Feed()
        self.per_minute: OrderedDict[int, Counter[str]] = OrderedDict()
        self.outcomes: Counter[tuple[str, int | None]] = Counter()
        self.webhook_seconds: deque[float] = deque(maxlen=500)
        self.webhook_errors: Counter[int] = Counter()
        self.webhook_calls = 0
        self.hubs: dict[str, HubHealth] = {}

    def observe(self, event: RegistrationEvent) -> None:
        kind = event.kind
        if kind == "attested":
            self.journal.attested(event)
            return
        if kind == "placed" and event.hub:
            health = self.hubs.setdefault(event.hub.lower(), HubHealth())
            health.placed += 1
            health.last_ok = time.time()
            return
        if kind not in _OUTCOMES:
            return
        now = time.time()
        minute = int(now // 60)
        counts = self.per_minute.get(minute)
        if counts is None:
            counts = self.per_minute[minute] = Counter()
            while len(self.per_minute) > MINUTES:
                self.per_minute.popitem(last=False)
        counts[kind] += 1
        error = event.error
        self.outcomes[kind, error.error_code if error else None] += 1
        if error is not None and error.error_code == HUB_CONNECTOR_FAILED and event.hub:
            health = self.hubs.setdefault(event.hub.lower(), HubHealth())
            health.failed += 1
            health.last_failure, health.last_error = now, error.message
        entry = self.journal.outcome(event, now)
        if self.feed:
            self.feed.publish(feed_item(entry))

    def webhook(self, exchange: Exchange) -> None:
        """An exchange observer (webhooks and in-process allocators alike)."""
        self.webhook_calls += 1
        self.webhook_seconds.append(exchange.duration_ms / 1000)
        if exchange.error is not None:
            self.webhook_errors[exchange.error["errorCode"]] += 1
        self.journal.exchange(exchange.registration_id, exchange)

    def minutes(self, now: float | None = None) -> list[tuple[int, Counter[str]]]:
        """The last hour, a minute at a time (oldest first), zeros included."""
        current = int((now or time.time()) // 60)
        return [
            (minute, self.per_minute.get(minute, Counter()))
            for minute in range(current - MINUTES + 1, current + 1)
        ]

    def webhook_percentile(self, fraction: float) -> float | None:
        if not self.webhook_seconds:
            return None
        ordered = sorted(self.webhook_seconds)
        return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))]
