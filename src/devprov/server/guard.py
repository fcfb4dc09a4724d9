"""What every listener does to a peer before and around its protocol: caps and deadlines.

A `Gate` belongs to one listener (HTTPS, MQTT, AMQP). It refuses a connection past the
listener's cap or its source address's cap (closed at once, counted, logged once an interval),
and gives each connection it lets in a `Guard`: a deadline the protocol arms and disarms (a
request head that must be complete, say) which aborts the connection when it expires, however
many bytes trickle in meanwhile. `GuardedProtocol` wraps the listener's own protocol with both.

Closures are summed up in one log line an interval, not one each: a slowloris of thousands of
peers costs the log a line, not thousands.
"""

from __future__ import annotations

import asyncio
import logging
import time
import weakref
from collections import Counter
from collections.abc import Callable
from typing import Any

log = logging.getLogger(__name__)
LOG_INTERVAL_SECONDS = 10.0


class Tally:
    """Counts events by reason and logs the counts at most once per interval."""

    def __init__(self, what: str, interval: float = LOG_INTERVAL_SECONDS) -> None:
        self.what = what
        self.interval = interval
        self.counts: Counter[str] = Counter()
        self.totals: Counter[str] = Counter()
        self._since = time.monotonic()

    def count(self, reason: str) -> None:
        self.counts[reason] += 1
        self.totals[reason] += 1
        now = time.monotonic()
        if now - self._since >= self.interval:
            self.flush(now)

    def flush(self, now: float | None = None) -> None:
        if self.counts:
            summary = ", ".join(f"{n} {reason}" for reason, n in self.counts.most_common())
            log.warning("%s in the last %.0f s: %s", self.what, self.interval, summary)
            self.counts.clear()
        self._since = time.monotonic() if now is None else now


class Guard:
    """One connection's deadline: `arm` it, `disarm` it; when it expires the connection is
    aborted (no close handshake: a peer that stalls would stall that too).

    Arming and disarming only set the deadline (they run for every request); one timer per
    connection checks it when due and sleeps again until the next one."""

    def __init__(self, gate: Gate, transport: asyncio.Transport, address: str) -> None:
        self.gate = gate
        self.transport = transport
        self.address = address
        self._timer: asyncio.TimerHandle | None = None
        self._deadline: float | None = None
        self.reason: str | None = None
        self.busy = 0
        """Requests in progress on the connection (the HTTPS listener counts them)."""

    @property
    def armed(self) -> bool:
        return self._deadline is not None

    def arm(self, seconds: float, reason: str) -> None:
        loop = asyncio.get_running_loop()
        self.reason = reason
        self._deadline = loop.time() + seconds
        if self._timer is None:
            self._timer = loop.call_at(self._deadline, self._check)

    def disarm(self) -> None:
        self._deadline = None

    def close(self) -> None:
        self._deadline = None
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def _check(self) -> None:
        self._timer = None
        if self._deadline is None:
            return
        loop = asyncio.get_running_loop()
        if loop.time() < self._deadline:
            self._timer = loop.call_at(self._deadline, self._check)
            return
        self._deadline = None
        self.gate.closed.count(self.reason or "deadline")
        self.transport.abort()


class Gate:
    """One listener's caps, and the connections it holds now."""

    def __init__(self, name: str, max_connections: int = 0, max_per_address: int = 0) -> None:
        self.name = name
        self.max_connections = max_connections
        self.max_per_address = max_per_address
        self.by_address: Counter[str] = Counter()
        self.open = 0
        self.refused = Tally(f"{name}: connections refused")
        self.closed = Tally(f"{name}: connections closed")
        self.guards: weakref.WeakKeyDictionary[asyncio.BaseTransport, Guard] = (
            weakref.WeakKeyDictionary()
        )
        self.outboxes: weakref.WeakSet[Outbox] = weakref.WeakSet()
        """The outboxes of its WebSocket sessions (for tests and figures)."""

    def admit(self, transport: asyncio.Transport) -> Guard | None:
        """A guard for the new connection, or None when it must be refused (then it is)."""
        address = _address(transport)
        if self.max_connections and self.open >= self.max_connections:
            reason = f"over the listener's cap of {self.max_connections}"
        elif self.max_per_address and self.by_address[address] >= self.max_per_address:
            reason = f"over the cap of {self.max_per_address} per address"
        else:
            self.open += 1
            self.by_address[address] += 1
            guard = Guard(self, transport, address)
            self.guards[transport] = guard
            return guard
        self.refused.count(reason)
        transport.abort()
        return None

    def release(self, guard: Guard) -> None:
        guard.close()
        self.open -= 1
        address = guard.address
        self.by_address[address] -= 1
        if self.by_address[address] <= 0:
            del self.by_address[address]

    def guard_of(self, transport: asyncio.BaseTransport | None) -> Guard | None:
        return self.guards.get(transport) if transport is not None else None

    def transports(self) -> list[asyncio.Transport]:
        """The connections held now (for tests and figures)."""
        return [guard.transport for guard in list(self.guards.values())]


def _address(transport: asyncio.BaseTransport) -> str:
    peer = transport.get_extra_info("peername")
    return str(peer[0]) if isinstance(peer, tuple) and peer else "?"


class GuardedProtocol(asyncio.Protocol):
    """Wraps a listener's protocol: refuses what its gate refuses, releases what it let in,
    and hands the inner protocol every event (flow control included)."""

    def __init__(
        self,
        gate: Gate,
        inner: asyncio.Protocol,
        on_admit: Callable[[Guard], None] | None = None,
    ) -> None:
        self.gate = gate
        self.inner = inner
        self.on_admit = on_admit
        self.guard: Guard | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.guard = self.gate.admit(transport)
        if self.guard is None:
            return
        if self.on_admit is not None:
            self.on_admit(self.guard)
        self.inner.connection_made(transport)

    def data_received(self, data: bytes) -> None:
        if self.guard is not None:
            self.inner.data_received(data)

    def eof_received(self) -> bool | None:
        return self.inner.eof_received() if self.guard is not None else None

    def connection_lost(self, exc: Exception | None) -> None:
        if self.guard is None:
            return
        self.gate.release(self.guard)
        self.inner.connection_lost(exc)

    def pause_writing(self) -> None:
        if self.guard is not None:
            self.inner.pause_writing()

    def resume_writing(self) -> None:
        if self.guard is not None:
            self.inner.resume_writing()

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)


class ResourceErrors:
    """An event-loop exception handler that sums up `accept() out of system resource` (file
    descriptors exhausted: asyncio reports it on every retry) into one line an interval, and
    hands everything else to the loop's default handler."""

    def __init__(self, interval: float = LOG_INTERVAL_SECONDS) -> None:
        self.tally = Tally("accept() failed for want of file descriptors", interval)

    def __call__(self, loop: asyncio.AbstractEventLoop, context: dict[str, Any]) -> None:
        message = str(context.get("message", ""))
        if "out of system resource" in message:
            self.tally.count(str(context.get("exception") or "out of system resource"))
            return
        loop.default_exception_handler(context)


HIGH_WATER_BYTES = 256 * 1024
"""A connection whose unsent answers pass this stops being read until they drain."""


class Outbox:
    """Answers waiting to go out on a WebSocket, counted in bytes: the reader waits on
    `room()` before taking more requests, so a client that never reads its answers costs at
    most this high-water mark plus the requests already in progress."""

    def __init__(self, high_water: int = HIGH_WATER_BYTES) -> None:
        self.high_water = high_water
        self.queue: asyncio.Queue[bytes | None] = asyncio.Queue()
        self.size = 0
        self.peak = 0
        self.pauses = 0
        self._room = asyncio.Event()
        self._room.set()

    def put(self, data: bytes) -> None:
        self.size += len(data)
        self.peak = max(self.peak, self.size)
        if self.size > self.high_water and self._room.is_set():
            self.pauses += 1
            self._room.clear()
        self.queue.put_nowait(data)

    def end(self) -> None:
        self.queue.put_nowait(None)
        self._room.set()

    async def get(self) -> bytes | None:
        data = await self.queue.get()
        if data is not None:
            self.size -= len(data)
            if self.size <= self.high_water // 2:
                self._room.set()
        return data

    async def room(self) -> None:
        await self._room.wait()
