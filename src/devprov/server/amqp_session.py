"""One AMQP connection, whatever carries its bytes, served by one application (DPS).

The session is the thin loop around the sans-I/O connection (protocol/amqp.py). It owns what any
AMQP service needs: the deadline to get the connection open (SASL included), the idle time-out
and heartbeats, the tasks of requests in progress, and closing. The application decides the
SASL exchange, which links to take and what each message gets (see `AmqpApplication`). A reply
goes out on the link the peer receives on at the address the request came to, as soon as the
peer has attached it.

Idle connections cost little: no task of their own, one timer.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from typing import Any, Protocol

from devprov.protocol import amqp
from devprov.protocol.amqp_frames import Message
from devprov.protocol.amqp_types import Described

log = logging.getLogger(__name__)
OPEN_TIMEOUT_SECONDS = 30.0  # from TCP to open: a TPM device works its TPM during SASL
IDLE_TIMEOUT_SECONDS = 120.0


@dataclass(frozen=True)
class AmqpLimits:
    """How long a client may take from TCP to open (whatever it sends meanwhile), and how long
    an open connection may stay silent."""

    open_timeout: float = OPEN_TIMEOUT_SECONDS
    idle_timeout: float = IDLE_TIMEOUT_SECONDS


DEFAULT_LIMITS = AmqpLimits()


class Refusal(Exception):
    """The application refuses a link: it is detached with this error condition."""

    def __init__(self, condition: str, description: str) -> None:
        super().__init__(description)
        self.condition = condition
        self.description = description


@dataclass(frozen=True)
class Answer:
    """What a message gets: its outcome (accepted, rejected…) and maybe a reply."""

    outcome: Described
    reply: Message | None = None


class AmqpClient(Protocol):
    """The application's side of one connection."""

    @property
    def name(self) -> str:
        """Who the peer is, for logs."""
        ...

    async def sasl(self, step: amqp.SaslStarted | amqp.SaslAnswered) -> bytes | int:
        """A challenge to send, or the SASL outcome code."""
        ...

    def attach(self, link: amqp.Link) -> Coroutine[Any, Any, None] | None:
        """Take the link (None), refuse it (raise `Refusal`), or decide later: work that
        returns or raises the same way (most links are decided at once, without a task)."""
        ...

    async def message(self, link: amqp.Link, message: Message) -> Answer: ...


class AmqpSession:
    """One client's AMQP connection."""

    def __init__(
        self,
        connection: amqp.ServerConnection,
        client: AmqpClient,
        write: Callable[[bytes], None],
        close: Callable[[], None],
        limits: AmqpLimits = DEFAULT_LIMITS,
    ) -> None:
        self.limits = limits
        self.connection = connection
        self.client = client
        self._write = write
        self._close = close
        self._tasks: set[asyncio.Task[None]] = set()
        self._replies: list[tuple[str | None, Message]] = []  # awaiting a link to go out on
        loop = asyncio.get_running_loop()
        self._last_seen = loop.time()
        self._timer: asyncio.TimerHandle | None = None
        self._heartbeat: asyncio.TimerHandle | None = None
        self._watch(limits.open_timeout)

    # Bytes in, events out --------------------------------------------------------------------

    def data_received(self, data: bytes) -> None:
        self._last_seen = asyncio.get_running_loop().time()
        was_open = self.connection.state is amqp.State.OPEN
        try:
            events = self.connection.receive_data(data)
        except amqp.RemoteProtocolError as error:
            log.info("AMQP protocol error from %s: %s", self.client.name, error)
            self.close()
            return
        except amqp.LocalProtocolError:
            log.exception("AMQP session of %s broke the protocol itself", self.client.name)
            self.close()
            return
        for event in events:
            self._handle(event)
        if not was_open and self.connection.state is amqp.State.OPEN:
            self._opened()
        self._flush()

    def _handle(self, event: amqp.Event) -> None:
        if isinstance(event, (amqp.SaslStarted, amqp.SaslAnswered)):
            self._start(self._sasl(event))
        elif isinstance(event, amqp.LinkAttached):
            try:
                decision = self.client.attach(event.link)
            except Refusal as refusal:
                self._refuse(event.link, refusal)
            else:
                if decision is None:
                    self._accept(event.link)
                else:
                    self._start(self._attach(event.link, decision))
        elif isinstance(event, amqp.MessageReceived):
            self._start(self._message(event))
        elif isinstance(event, amqp.Closed) and event.error is not None:
            log.info("AMQP client %s closed with %s", self.client.name, event.error)

    def _flush(self) -> None:
        data = self.connection.data_to_send()
        if data:
            self._write(data)
        if self._closed():
            self._close()

    def _closed(self) -> bool:
        return self.connection.state is amqp.State.CLOSED

    def _opened(self) -> None:
        self._watch(self.limits.idle_timeout)
        remote = self.connection.remote_idle_timeout_ms
        if remote:
            self._beat(remote / 2000)

    # The application's decisions -------------------------------------------------------------

    async def _sasl(self, event: amqp.SaslStarted | amqp.SaslAnswered) -> None:
        step = await self.client.sasl(event)
        if self.connection.state is not amqp.State.SASL_PENDING:
            return  # the peer left while we decided
        if isinstance(step, bytes):
            self.connection.sasl_challenge(step)
        else:
            self.connection.sasl_outcome(step)
        self._flush()  # alone: rhea must not read our AMQP header with the outcome
        if not self._closed():
            self.data_received(b"")  # what the peer sent while we decided

    async def _attach(self, link: amqp.Link, decision: Coroutine[Any, Any, None]) -> None:
        try:
            await decision
        except Refusal as refusal:
            self._refuse(link, refusal)
        else:
            self._accept(link)
        self._flush()

    def _accept(self, link: amqp.Link) -> None:
        self.connection.accept_link(link)
        if self._replies:
            self._send_replies()

    def _refuse(self, link: amqp.Link, refusal: Refusal) -> None:
        log.info("AMQP link %r of %s refused: %s", link.address, self.client.name, refusal)
        self.connection.refuse_link(link, refusal.condition, refusal.description)

    async def _message(self, event: amqp.MessageReceived) -> None:
        answer = await self.client.message(event.link, event.message)
        self.connection.settle(event.link, event.delivery_id, answer.outcome)
        if answer.reply is not None:
            self._replies.append((event.link.address, answer.reply))
            self._send_replies()
        self._flush()

    def _send_replies(self) -> None:
        session_links = [
            link
            for link in self.connection.links()
            if not link.receiving and link.accepted and not link.detached
        ]
        waiting = []
        for address, reply in self._replies:
            link = next((link for link in session_links if link.address == address), None)
            if link is None or not self.connection.send_message(link, reply):
                waiting.append((address, reply))
        self._replies = waiting

    def _start(self, work: Coroutine[Any, Any, None]) -> None:
        async def guarded() -> None:
            try:
                await work
            except Exception:
                log.exception("AMQP request of %s failed", self.client.name)
                self.connection.close(amqp.INTERNAL_ERROR, "internal error; see the server log")
                self._flush()

        task = asyncio.create_task(guarded())
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    # Timers and ending -------------------------------------------------------------------------

    def _watch(self, seconds: float) -> None:
        """Close the connection after `seconds` of silence (checked when the timer fires);
        before the connection is open, `seconds` after it started, whatever was said."""
        if self._timer is not None:
            self._timer.cancel()
        loop = asyncio.get_running_loop()
        started = loop.time()

        def check() -> None:
            opening = self.connection.state is not amqp.State.OPEN
            since = started if opening else self._last_seen
            idle = loop.time() - since
            if idle < seconds:
                self._timer = loop.call_later(seconds - idle, check)
                return
            log.info("AMQP client %s silent or not open after %.0f s", self.client.name, idle)
            self.connection.close(amqp.RESOURCE_LIMIT_EXCEEDED, "idle time-out expired")
            self._flush()

        self._timer = loop.call_later(seconds, check)

    def _beat(self, seconds: float) -> None:
        def beat() -> None:
            self.connection.heartbeat()
            self._flush()
            self._heartbeat = asyncio.get_running_loop().call_later(seconds, beat)

        self._heartbeat = asyncio.get_running_loop().call_later(seconds, beat)

    def close(self) -> None:
        self._flush()
        self._close()

    def connection_lost(self) -> None:
        self.connection.lost()
        for timer in (self._timer, self._heartbeat):
            if timer is not None:
                timer.cancel()
        for task in self._tasks:
            task.cancel()
