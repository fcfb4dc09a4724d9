"""A sans-I/O AMQP 1.0 server connection: protocol headers, SASL, one session, its links.

Bytes go in through `ServerConnection.receive_data`, events come out; what the server must
send accumulates and is taken with `data_to_send`. No sockets, clocks or tasks live here, so
every rule is a unit test (as protocol/mqtt.py does for MQTT). Section numbers refer to the
OASIS AMQP 1.0 standard.

The connection answers the structural frames itself: headers, open, begin, end, close, the
detach of a link the peer detaches, and flow control. The application decides the rest: the
SASL exchange (`sasl_challenge`, `sasl_outcome`), whether to take a link (`accept_link`), the
outcome of each message (`settle`) and what to send (`send_message`).

It is strict and bounded, as a server facing devices should be: one session (channel-max 0),
at most `handle_max + 1` links, a maximum frame and message size, a session window and link
credit the peer must respect. Any violation raises `RemoteProtocolError` after queueing the
goodbye the standard asks for (a close with the error condition, or an open then a close
before the connection was open, or our protocol header for a header we do not speak); the
caller then sends what is queued and closes the transport.

One module on purpose (about 700 lines): the connection, session and link endpoints share
their counters (transfer ids, windows, credit), and read best side by side with part 2.
"""

from __future__ import annotations

import struct
from collections import deque
from dataclasses import dataclass, field
from enum import Enum
from typing import Any

from devprov.protocol.amqp_frames import (
    AMQP_HEADER,
    FRAME_AMQP,
    FRAME_HEADER_BYTES,
    FRAME_SASL,
    SASL_HEADER,
    AmqpError,
    Attach,
    Begin,
    Close,
    Detach,
    Disposition,
    End,
    FieldError,
    Flow,
    Message,
    Open,
    Performative,
    SaslChallenge,
    SaslInit,
    SaslMechanisms,
    SaslOutcome,
    SaslResponse,
    Transfer,
    decode_body,
    decode_message,
    frame,
    terminus_address,
)
from devprov.protocol.amqp_types import DecodeError, Described, EncodeError

# Error conditions (2.8.15-2.8.18).
INTERNAL_ERROR = "amqp:internal-error"
NOT_FOUND = "amqp:not-found"
UNAUTHORIZED_ACCESS = "amqp:unauthorized-access"
DECODE_ERROR = "amqp:decode-error"
RESOURCE_LIMIT_EXCEEDED = "amqp:resource-limit-exceeded"
NOT_ALLOWED = "amqp:not-allowed"
INVALID_FIELD = "amqp:invalid-field"
FRAMING_ERROR = "amqp:connection:framing-error"
WINDOW_VIOLATION = "amqp:session:window-violation"
HANDLE_IN_USE = "amqp:session:handle-in-use"
UNATTACHED_HANDLE = "amqp:session:unattached-handle"
TRANSFER_LIMIT_EXCEEDED = "amqp:link:transfer-limit-exceeded"
MESSAGE_SIZE_EXCEEDED = "amqp:link:message-size-exceeded"

# SASL outcome codes (5.3.3.6).
SASL_OK, SASL_AUTH, SASL_SYS, SASL_SYS_PERM, SASL_SYS_TEMP = 0, 1, 2, 3, 4

DEFAULT_MAX_FRAME_SIZE = 64 * 1024
DEFAULT_MAX_MESSAGE_SIZE = 256 * 1024
UNLIMITED = 0xFFFFFFFF


class ProtocolError(Exception):
    """A rule was broken; the connection is over once what is queued has been sent."""


class RemoteProtocolError(ProtocolError):
    """The peer broke the protocol; `condition` is the AMQP error condition it was told."""

    def __init__(self, condition: str, description: str) -> None:
        super().__init__(f"{condition}: {description}")
        self.condition = condition
        self.description = description


class LocalProtocolError(ProtocolError, ValueError):
    """This side asked for something the protocol or the connection's state forbids."""


class State(Enum):
    AWAIT_HEADER = "await-header"
    SASL_INIT = "sasl-init"  # mechanisms sent, the peer's sasl-init awaited
    SASL_PENDING = "sasl-pending"  # the application must challenge or decide; input is held
    SASL_RESPONSE = "sasl-response"  # challenge sent, the peer's response awaited
    AWAIT_AMQP_HEADER = "await-amqp-header"  # SASL succeeded
    AWAIT_OPEN = "await-open"
    OPEN = "open"
    CLOSED = "closed"


@dataclass(eq=False)
class Link:
    """One link of the session, as the peer attached it. `receiving`: the peer sends on it."""

    handle: int
    name: str
    receiving: bool
    address: str | None
    properties: dict[Any, Any]
    attach: Attach
    accepted: bool = False
    detached: bool = False  # no longer usable: we or the peer detached it
    detach_sent: bool = False  # we detached it first: the handle waits for the peer's detach
    credit: int = 0  # receiving: what we granted and is left; sending: what the peer gave us
    delivery_count: int = 0
    drain: bool = False
    outbox: deque[bytes] = field(default_factory=deque)
    partial: _Partial | None = None


@dataclass
class _Partial:
    """A delivery whose transfer frames are still arriving (`more`)."""

    delivery_id: int
    settled: bool
    chunks: list[bytes]
    size: int


# Events ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class SaslStarted:
    """The peer chose a mechanism; answer with `sasl_challenge` or `sasl_outcome`."""

    mechanism: str
    initial_response: bytes
    hostname: str | None


@dataclass(frozen=True)
class SaslAnswered:
    """The peer answered a challenge; answer with `sasl_challenge` or `sasl_outcome`."""

    response: bytes


@dataclass(frozen=True)
class LinkAttached:
    """The peer attached a link; take it with `accept_link`, or `close` the connection."""

    link: Link


@dataclass(frozen=True)
class MessageReceived:
    """A whole message arrived on a receiving link; `settle` it once handled."""

    link: Link
    delivery_id: int
    message: Message


@dataclass(frozen=True)
class LinkDetached:
    link: Link
    error: AmqpError | None


@dataclass(frozen=True)
class Closed:
    """The peer closed the connection (already answered)."""

    error: AmqpError | None


Event = SaslStarted | SaslAnswered | LinkAttached | MessageReceived | LinkDetached | Closed


@dataclass
class _Session:
    channel: int
    next_incoming_id: int
    remote_incoming_window: int
    incoming_left: int
    next_outgoing_id: int = 0
    next_delivery_id: int = 0
    links: dict[int, Link] = field(default_factory=dict)
    unsettled: dict[int, tuple[Link, bool]] = field(default_factory=dict)


def _transfer(link: Link, delivery_id: int, *, first: bool, more: bool) -> bytes:
    """A transfer we send: settled, tagged with its delivery id; continuations say only more."""
    if not first:
        return Transfer(link.handle, more=more).encode()
    tag = struct.pack(">I", delivery_id)
    return Transfer(link.handle, delivery_id, tag, 0, settled=True, more=more).encode()


def _fail(condition: str, description: str) -> RemoteProtocolError:
    return RemoteProtocolError(condition, description)


@dataclass
class ServerConnection:
    """One client connection as the server sees it.

    `mechanisms` are the SASL mechanisms offered, in order of preference; a peer may also skip
    SASL (the AMQP header straight away), as X.509 devices do: the application then knows the
    peer only by its TLS certificate. After `sasl_outcome` or any other call that may let held
    input through, send `data_to_send()` first, then call `receive_data(b"")`: a peer must not
    see our AMQP header in the same read as the SASL outcome (rhea then never reads it)."""

    mechanisms: tuple[str, ...] = ()
    container_id: str = "devprov"
    max_frame_size: int = DEFAULT_MAX_FRAME_SIZE
    max_message_size: int = DEFAULT_MAX_MESSAGE_SIZE
    idle_timeout_ms: int | None = None
    handle_max: int = 7
    link_credit: int = 8
    incoming_window: int = 1024
    state: State = State.AWAIT_HEADER
    sasl_mechanism: str | None = None
    remote_max_frame_size: int = UNLIMITED
    remote_idle_timeout_ms: int | None = None
    _buffer: bytearray = field(default_factory=bytearray)
    _out: bytearray = field(default_factory=bytearray)
    _session: _Session | None = None

    # Input ------------------------------------------------------------------------------------

    def receive_data(self, data: bytes) -> list[Event]:
        """Feed bytes; returns the events they complete, in order."""
        if self.state is State.CLOSED:
            raise LocalProtocolError("data after the connection closed")
        self._buffer += data
        events: list[Event] = []
        try:
            while self.state not in (State.SASL_PENDING, State.CLOSED):
                if self.state in (State.AWAIT_HEADER, State.AWAIT_AMQP_HEADER):
                    if len(self._buffer) < 8:
                        break
                    header = bytes(self._buffer[:8])
                    del self._buffer[:8]
                    self._header(header)
                    continue
                taken = self._take_frame()
                if taken is None:
                    break
                self._frame(*taken, events)
        except RemoteProtocolError as error:
            self._goodbye(error)
            raise
        return events

    def data_to_send(self) -> bytes:
        out = bytes(self._out)
        self._out.clear()
        return out

    def _send(self, performative: Performative, kind: int = FRAME_AMQP) -> None:
        self._out += frame(kind, 0, performative.encode())

    def _header(self, header: bytes) -> None:
        valid = header[:4] == b"AMQP" and header[5:7] == b"\x01\x00"
        protocol = header[4] if valid else None
        if self.state is State.AWAIT_HEADER and protocol == 3 and self.mechanisms:
            self._out += SASL_HEADER
            self.state = State.SASL_INIT
            self._send(SaslMechanisms(self.mechanisms), FRAME_SASL)
        elif protocol == 0:
            self._out += AMQP_HEADER
            self.state = State.AWAIT_OPEN
        else:
            raise _fail(FRAMING_ERROR, f"unsupported protocol header {header!r}")

    def _take_frame(self) -> tuple[int, int, bytes] | None:
        """The first whole frame: (type, channel, body), or None until it has arrived."""
        if len(self._buffer) < FRAME_HEADER_BYTES:
            return None
        size, offset, kind, channel = struct.unpack_from(">IBBH", self._buffer)
        if size < FRAME_HEADER_BYTES or offset < 2 or offset * 4 > size:
            raise _fail(FRAMING_ERROR, f"malformed frame header (size {size}, doff {offset})")
        if size > self.max_frame_size:
            raise _fail(FRAMING_ERROR, f"frame of {size} bytes over the {self.max_frame_size}")
        if len(self._buffer) < size:
            return None
        body = bytes(self._buffer[offset * 4 : size])
        del self._buffer[:size]
        return kind, channel, body

    def _frame(self, kind: int, channel: int, body: bytes, events: list[Event]) -> None:
        sasl = self.state in (State.SASL_INIT, State.SASL_RESPONSE)
        if kind != (FRAME_SASL if sasl else FRAME_AMQP):
            raise _fail(FRAMING_ERROR, f"frame type {kind} in state {self.state.value}")
        if not body:
            if sasl:
                raise _fail(FRAMING_ERROR, "empty SASL frame")
            return  # a heartbeat (2.4.5)
        try:
            performative, payload = decode_body(kind, body)
        except FieldError as error:
            raise _fail(INVALID_FIELD, str(error)) from None
        except DecodeError as error:
            raise _fail(DECODE_ERROR, str(error)) from None
        if sasl:
            self._sasl(performative, events)
        elif self.state is State.AWAIT_OPEN:
            self._open(performative, channel)
        elif type(performative) is Begin:
            self._begin(performative, channel)
        elif type(performative) is Close:
            self._send(Close())
            self.state = State.CLOSED
            events.append(Closed(performative.error))
        else:
            self._session_frame(self._session_on(channel), performative, payload, events)

    # SASL (5.3) -------------------------------------------------------------------------------

    def _sasl(self, performative: Performative, events: list[Event]) -> None:
        if self.state is State.SASL_INIT and isinstance(performative, SaslInit):
            if performative.mechanism not in self.mechanisms:
                self._send(SaslOutcome(SASL_AUTH), FRAME_SASL)
                self.state = State.CLOSED
                raise _fail(UNAUTHORIZED_ACCESS, f"SASL mechanism {performative.mechanism!r}")
            self.sasl_mechanism = performative.mechanism
            self.state = State.SASL_PENDING
            response = performative.initial_response or b""
            events.append(SaslStarted(performative.mechanism, response, performative.hostname))
        elif self.state is State.SASL_RESPONSE and isinstance(performative, SaslResponse):
            self.state = State.SASL_PENDING
            events.append(SaslAnswered(performative.response))
        else:
            raise _fail(FRAMING_ERROR, f"{type(performative).__name__} out of turn in SASL")

    def sasl_challenge(self, challenge: bytes) -> None:
        self._sasl_turn()
        self.state = State.SASL_RESPONSE
        self._send(SaslChallenge(challenge), FRAME_SASL)

    def sasl_outcome(self, code: int) -> None:
        """End the SASL exchange; any code but SASL_OK ends the connection too."""
        self._sasl_turn()
        self._send(SaslOutcome(code), FRAME_SASL)
        self.state = State.AWAIT_AMQP_HEADER if code == SASL_OK else State.CLOSED

    def _sasl_turn(self) -> None:
        if self.state is not State.SASL_PENDING:
            raise LocalProtocolError(f"no SASL step is awaited in state {self.state.value}")

    # Connection and session -------------------------------------------------------------------

    def _open(self, performative: Performative, channel: int) -> None:
        if not isinstance(performative, Open) or channel != 0:
            raise _fail(FRAMING_ERROR, "the first frame must be an open on channel 0")
        self.remote_max_frame_size = performative.max_frame_size or UNLIMITED
        if self.remote_max_frame_size < 512:
            raise _fail(INVALID_FIELD, "max-frame-size below 512")
        self.remote_idle_timeout_ms = performative.idle_time_out or None
        self.state = State.OPEN
        self._send(
            Open(
                self.container_id,
                max_frame_size=self.max_frame_size,
                channel_max=0,
                idle_time_out=self.idle_timeout_ms,
            )
        )

    def _begin(self, begin: Begin, channel: int) -> None:
        if channel != 0:
            raise _fail(FRAMING_ERROR, f"channel {channel} is above channel-max 0")
        if self._session is not None or begin.remote_channel is not None:
            raise _fail(NOT_ALLOWED, "a begin on a channel that has a session, or an answer")
        self._session = _Session(
            channel,
            next_incoming_id=begin.next_outgoing_id,
            remote_incoming_window=begin.incoming_window,
            incoming_left=self.incoming_window,
        )
        self._send(
            Begin(
                remote_channel=channel,
                next_outgoing_id=0,
                incoming_window=self.incoming_window,
                outgoing_window=UNLIMITED,
                handle_max=self.handle_max,
            )
        )

    def _session_on(self, channel: int) -> _Session:
        if self._session is None or channel != self._session.channel:
            raise _fail(FRAMING_ERROR, f"a frame on channel {channel}, which has no session")
        return self._session

    def _session_frame(
        self, session: _Session, performative: Performative, payload: bytes, events: list[Event]
    ) -> None:
        if isinstance(performative, Attach):
            events.append(LinkAttached(self._attach(session, performative)))
        elif isinstance(performative, Flow):
            self._flow(session, performative)
        elif isinstance(performative, Transfer):
            self._transfer(session, performative, payload, events)
        elif isinstance(performative, Disposition):
            self._disposition(session, performative)
        elif isinstance(performative, Detach):
            link = self._link(session, performative.handle)
            if link.detach_sent:  # the answer to ours: the handle is free now
                session.links.pop(link.handle, None)
                return
            self._drop(session, link, closed=performative.closed)
            events.append(LinkDetached(link, performative.error))
        elif isinstance(performative, End):
            for link in list(session.links.values()):
                link.detached = True
            self._session = None
            self._send(End())
        else:  # an open, or SASL frames, after the open
            raise _fail(FRAMING_ERROR, f"{type(performative).__name__} out of turn")

    # Links --------------------------------------------------------------------------------

    def _attach(self, session: _Session, attach: Attach) -> Link:
        if attach.handle > self.handle_max:
            raise _fail(FRAMING_ERROR, f"handle {attach.handle} is above handle-max")
        if attach.handle in session.links:
            raise _fail(HANDLE_IN_USE, f"handle {attach.handle} is attached already")
        receiving = not attach.role  # role false: the peer is the sender
        address = terminus_address(attach.target if receiving else attach.source)
        link = Link(
            attach.handle,
            attach.name,
            receiving,
            address,
            attach.properties or {},
            attach,
            delivery_count=(attach.initial_delivery_count or 0) if receiving else 0,
        )
        session.links[attach.handle] = link
        return link

    def _link(self, session: _Session, handle: int | None) -> Link:
        link = session.links.get(handle) if handle is not None else None
        if link is None:
            raise _fail(UNATTACHED_HANDLE, f"handle {handle} is not attached")
        return link

    def accept_link(self, link: Link) -> None:
        """Answer the peer's attach, echoing its source and target; grant credit when the
        peer sends on the link. A link detached meanwhile is left alone."""
        if link.detached or link.accepted or self.state is not State.OPEN:
            return
        self._answer_attach(link, link.attach.source, link.attach.target)
        link.accepted = True
        if link.receiving:
            link.credit = self.link_credit
            self._send_flow(link)
        else:
            self._pump(link)

    def refuse_link(self, link: Link, condition: str, description: str) -> None:
        """Refuse the peer's attach as 2.6.3 says: an attach without our terminus, then a
        detach with the error. The connection stays open."""
        session = self._session
        if link.detached or link.accepted or session is None or self.state is not State.OPEN:
            return
        self._drop(session, link, closed=True, error=AmqpError(condition, description))
        link.detach_sent = True
        session.links[link.handle] = link  # until the peer answers the detach

    def _answer_attach(
        self, link: Link, source: Described | None, target: Described | None
    ) -> None:
        self._send(
            Attach(
                link.name,
                link.handle,
                role=link.receiving,
                snd_settle_mode=link.attach.snd_settle_mode,
                rcv_settle_mode=0,
                source=source,
                target=target,
                initial_delivery_count=None if link.receiving else 0,
                max_message_size=self.max_message_size if link.receiving else None,
            )
        )

    def _drop(
        self, session: _Session, link: Link, closed: bool | None, error: AmqpError | None = None
    ) -> None:
        if not link.accepted:  # an attach we never answered: answer without our terminus
            self._answer_attach(
                link,
                link.attach.source if link.receiving else None,
                None if link.receiving else link.attach.target,
            )
        link.detached = True
        session.links.pop(link.handle, None)
        for delivery_id in [d for d, (owner, _) in session.unsettled.items() if owner is link]:
            del session.unsettled[delivery_id]
        self._send(Detach(link.handle, closed=closed, error=error))

    def _send_flow(self, link: Link | None = None, drain: bool | None = None) -> None:
        session = self._session
        assert session is not None
        session.incoming_left = self.incoming_window
        self._send(
            Flow(
                next_incoming_id=session.next_incoming_id,
                incoming_window=self.incoming_window,
                next_outgoing_id=session.next_outgoing_id,
                outgoing_window=UNLIMITED,
                handle=link.handle if link else None,
                delivery_count=link.delivery_count if link else None,
                link_credit=link.credit if link else None,
                drain=drain,
            )
        )

    def _flow(self, session: _Session, flow: Flow) -> None:
        session.remote_incoming_window = (
            (flow.next_incoming_id or 0) + flow.incoming_window - session.next_outgoing_id
        )
        if flow.handle is None:
            self._pump_all(session)
            return
        link = self._link(session, flow.handle)
        if not link.receiving:
            counted = link.delivery_count if flow.delivery_count is None else flow.delivery_count
            link.credit = max(0, counted + (flow.link_credit or 0) - link.delivery_count)
            link.drain = bool(flow.drain)
            self._pump(link)
        if flow.echo and link.accepted:
            self._send_flow(link)

    # Deliveries -----------------------------------------------------------------------------

    def _transfer(
        self, session: _Session, transfer: Transfer, payload: bytes, events: list[Event]
    ) -> None:
        link = self._link(session, transfer.handle)
        if not link.receiving:
            raise _fail(NOT_ALLOWED, f"a transfer on handle {link.handle}, which we send on")
        session.incoming_left -= 1
        session.next_incoming_id = (session.next_incoming_id + 1) & UNLIMITED
        if session.incoming_left < 0:
            raise _fail(WINDOW_VIOLATION, "transfers beyond the session's incoming window")
        partial = link.partial
        if partial is None:
            if transfer.delivery_id is None:
                raise _fail(INVALID_FIELD, "the first transfer of a delivery has no delivery-id")
            if link.credit <= 0:
                raise _fail(TRANSFER_LIMIT_EXCEEDED, f"a transfer without credit on {link.name!r}")
            if transfer.delivery_id in session.unsettled:
                raise _fail(INVALID_FIELD, f"delivery-id {transfer.delivery_id} is in use")
            link.credit -= 1
            link.delivery_count = (link.delivery_count + 1) & UNLIMITED
            partial = _Partial(transfer.delivery_id, bool(transfer.settled), [], 0)
            link.partial = partial
        elif transfer.delivery_id not in (None, partial.delivery_id):
            raise _fail(INVALID_FIELD, "a transfer of another delivery before this one ended")
        partial.settled |= bool(transfer.settled)
        partial.size += len(payload)
        if partial.size > self.max_message_size:
            raise _fail(MESSAGE_SIZE_EXCEEDED, f"a message over {self.max_message_size} bytes")
        partial.chunks.append(payload)
        if transfer.more and not transfer.aborted:
            return
        link.partial = None
        session.unsettled[partial.delivery_id] = (link, partial.settled)
        if transfer.aborted:  # an aborted delivery counts as settled, and carries nothing
            self.settle(link, partial.delivery_id, None)
            return
        try:
            message = decode_message(b"".join(partial.chunks))
        except DecodeError as error:
            raise _fail(DECODE_ERROR, f"message: {error}") from None
        events.append(MessageReceived(link, partial.delivery_id, message))

    def settle(self, link: Link, delivery_id: int, outcome: Described | None) -> None:
        """Settle a received delivery with an outcome (accepted, rejected…), and top the
        link's credit up once half of it is free again: credit and unsettled deliveries
        together stay within `link_credit`. Does nothing once the link is gone."""
        session = self._session
        if self.state is not State.OPEN or session is None or link.detached:
            return
        owner, presettled = session.unsettled.pop(delivery_id, (None, True))
        if owner is not link:
            return
        if not presettled and outcome is not None:
            self._send(Disposition(True, delivery_id, settled=True, state=outcome))
        unsettled = sum(owner is link for owner, _ in session.unsettled.values())
        if self.link_credit - unsettled - link.credit >= (self.link_credit + 1) // 2:
            link.credit = self.link_credit - unsettled
            self._send_flow(link)

    def _disposition(self, session: _Session, disposition: Disposition) -> None:
        """The peer settles: what we sent is sent settled; a sender may settle its own."""
        if disposition.role or not disposition.settled:
            return
        last = disposition.first if disposition.last is None else disposition.last
        if last - disposition.first > len(session.unsettled):
            # Only the ids we hold can be settled: look them up rather than walk the range.
            targets = [d for d in session.unsettled if disposition.first <= d <= last]
        else:
            targets = list(range(disposition.first, last + 1))
        for delivery_id in targets:
            if delivery_id in session.unsettled:
                owner, _ = session.unsettled[delivery_id]
                session.unsettled[delivery_id] = (owner, True)

    def send_message(self, link: Link, message: Message) -> bool:
        """Send a message on a link the peer receives on, settled, as soon as its credit and
        the session window allow. False when the link is gone."""
        if link.receiving:
            raise LocalProtocolError(f"link {link.name!r} is one we receive on")
        if link.detached or self.state is not State.OPEN:
            return False
        try:
            link.outbox.append(message.encode())
        except EncodeError as error:
            raise LocalProtocolError(f"message cannot be encoded: {error}") from None
        self._pump(link)
        return True

    def _pump_all(self, session: _Session) -> None:
        for link in list(session.links.values()):
            if not link.receiving:
                self._pump(link)

    def _pump(self, link: Link) -> None:
        session = self._session
        if session is None or not link.accepted or link.detached:
            return
        while link.outbox and link.credit > 0:
            payload = link.outbox[0]
            delivery_id = session.next_delivery_id
            room = self.remote_max_frame_size - FRAME_HEADER_BYTES
            room -= len(_transfer(link, delivery_id, first=True, more=True))
            chunks = [payload[i : i + room] for i in range(0, len(payload), room)] or [b""]
            if session.remote_incoming_window < len(chunks):
                return  # the peer's window is closed: wait for its flow
            link.outbox.popleft()
            for position, chunk in enumerate(chunks):
                more = position < len(chunks) - 1
                body = _transfer(link, delivery_id, first=position == 0, more=more)
                self._out += frame(FRAME_AMQP, session.channel, body + chunk)
                session.next_outgoing_id = (session.next_outgoing_id + 1) & UNLIMITED
                session.remote_incoming_window -= 1
            session.next_delivery_id = (session.next_delivery_id + 1) & UNLIMITED
            link.delivery_count = (link.delivery_count + 1) & UNLIMITED
            link.credit -= 1
        if link.drain and not link.outbox and link.credit:
            link.delivery_count = (link.delivery_count + link.credit) & UNLIMITED
            link.credit = 0
            self._send_flow(link, drain=True)

    def links(self) -> list[Link]:
        """The links of the session, as attached now."""
        return list(self._session.links.values()) if self._session else []

    # Ending -------------------------------------------------------------------------------

    def lost(self) -> None:
        """The transport is gone: nothing more is read or sent."""
        self.state = State.CLOSED

    def heartbeat(self) -> None:
        """An empty frame, so a peer that asked for an idle time-out sees us alive (2.4.5)."""
        if self.state is State.OPEN:
            self._out += frame(FRAME_AMQP, 0, b"")

    def close(self, condition: str, description: str) -> None:
        """Close the connection with an error (or plainly, with an empty condition)."""
        if self.state is State.CLOSED:
            return
        self._goodbye(RemoteProtocolError(condition, description) if condition else None)

    def _goodbye(self, error: RemoteProtocolError | None) -> None:
        """Queue what the standard asks for before the transport closes, given the state."""
        amqp_error = AmqpError(error.condition, error.description) if error else None
        if self.state is State.AWAIT_HEADER:
            self._out += SASL_HEADER if self.mechanisms else AMQP_HEADER
        elif self.state is State.AWAIT_AMQP_HEADER:
            self._out += AMQP_HEADER
        elif self.state in (State.SASL_INIT, State.SASL_PENDING, State.SASL_RESPONSE):
            self._send(SaslOutcome(SASL_SYS_PERM if error else SASL_AUTH), FRAME_SASL)
        elif self.state is State.AWAIT_OPEN:
            self._send(Open(self.container_id))
            self._send(Close(amqp_error))
        elif self.state is State.OPEN:
            self._send(Close(amqp_error))
        self.state = State.CLOSED
