"""A sans-I/O MQTT 3.1.1 codec and server-side connection state machine, in the style of h11.

Bytes go in through `ServerConnection.receive_data`, packets come out; packets to send are turned
into bytes by `ServerConnection.send`. No sockets, clocks or tasks live here, so every rule is a
unit test. Section numbers refer to the MQTT 3.1.1 OASIS standard.

The server is deliberately strict and bounded: one maximum packet size, remaining lengths of at
most four bytes (2.2.3), reserved flags checked (2.2.2), a cap on unacknowledged QoS 1 messages
sent, and any violation raises `ProtocolError`, after which the connection is closed (4.8).
QoS 2 is refused for publishing and granted as QoS 1 for subscriptions, and no session state is
kept whatever CleanSession says, as DPS does.

One module on purpose (about 500 lines): the packet types, their codec and the connection state
machine are one protocol, read side by side with the standard, as h11 keeps HTTP/1.1.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass, field
from enum import Enum

PROTOCOL_NAME = "MQTT"
PROTOCOL_LEVEL = 4
DEFAULT_MAX_PACKET_BYTES = 256 * 1024
DEFAULT_MAX_INFLIGHT = 16
MAX_REMAINING_LENGTH = 268_435_455

CONNECT, CONNACK, PUBLISH, PUBACK, PUBREC, PUBREL, PUBCOMP = 1, 2, 3, 4, 5, 6, 7
SUBSCRIBE, SUBACK, UNSUBSCRIBE, UNSUBACK, PINGREQ, PINGRESP, DISCONNECT = 8, 9, 10, 11, 12, 13, 14

# CONNACK return codes (3.2.2.3).
ACCEPTED = 0
UNACCEPTABLE_PROTOCOL_VERSION = 1
IDENTIFIER_REJECTED = 2
SERVER_UNAVAILABLE = 3
BAD_USERNAME_OR_PASSWORD = 4
NOT_AUTHORIZED = 5
SUBSCRIBE_FAILURE = 0x80


class ProtocolError(Exception):
    """A protocol rule was broken; the connection must be closed (4.8).

    As in h11, who broke it is told apart: `RemoteProtocolError` when the peer did (log it at
    INFO, it is the peer's business), `LocalProtocolError` when this side asked for something
    the protocol forbids (our own bug, or a response that cannot be encoded)."""


class RemoteProtocolError(ProtocolError):
    """The peer broke the protocol. `connack_code` is set when the right answer is a refusing
    CONNACK (3.1.4) before closing."""

    def __init__(self, message: str, connack_code: int | None = None) -> None:
        super().__init__(message)
        self.connack_code = connack_code


class LocalProtocolError(ProtocolError, ValueError):
    """This side tried to send something MQTT does not allow."""


@dataclass(frozen=True)
class Connect:
    client_id: str
    username: str | None = None
    password: bytes | None = None
    keep_alive: int = 0
    clean_session: bool = True
    will_topic: str | None = None
    will_message: bytes | None = None
    will_qos: int = 0
    will_retain: bool = False
    protocol_name: str = PROTOCOL_NAME
    protocol_level: int = PROTOCOL_LEVEL


@dataclass(frozen=True)
class ConnAck:
    return_code: int
    session_present: bool = False


@dataclass(frozen=True)
class Publish:
    topic: str
    payload: bytes
    qos: int = 0
    packet_id: int | None = None
    retain: bool = False
    dup: bool = False


@dataclass(frozen=True)
class PubAck:
    packet_id: int


@dataclass(frozen=True)
class Subscribe:
    packet_id: int
    topics: tuple[tuple[str, int], ...]


@dataclass(frozen=True)
class SubAck:
    packet_id: int
    return_codes: tuple[int, ...]


@dataclass(frozen=True)
class Unsubscribe:
    packet_id: int
    topics: tuple[str, ...]


@dataclass(frozen=True)
class UnsubAck:
    packet_id: int


@dataclass(frozen=True)
class PingReq:
    pass


@dataclass(frozen=True)
class PingResp:
    pass


@dataclass(frozen=True)
class Disconnect:
    pass


Packet = (
    Connect | ConnAck | Publish | PubAck | Subscribe | SubAck | Unsubscribe | UnsubAck
    | PingReq | PingResp | Disconnect
)  # fmt: skip

# Encoding ---------------------------------------------------------------------------------


def _string(text: str) -> bytes:
    raw = text.encode("utf-8")
    if len(raw) > 0xFFFF:
        raise LocalProtocolError("MQTT strings are at most 65535 bytes")
    return struct.pack("!H", len(raw)) + raw


def _binary(data: bytes) -> bytes:
    if len(data) > 0xFFFF:
        raise LocalProtocolError("MQTT binary fields are at most 65535 bytes")
    return struct.pack("!H", len(data)) + data


def encode_remaining_length(length: int) -> bytes:
    """The variable-length integer of 2.2.3: seven bits a byte, at most four bytes."""
    if not 0 <= length <= MAX_REMAINING_LENGTH:
        raise LocalProtocolError(f"remaining length {length} out of range")
    out = bytearray()
    while True:
        digit, length = length % 128, length // 128
        out.append(digit | (0x80 if length else 0))
        if not length:
            return bytes(out)


def _frame(packet_type: int, flags: int, body: bytes) -> bytes:
    return bytes([packet_type << 4 | flags]) + encode_remaining_length(len(body)) + body


def encode(packet: Packet) -> bytes:
    """Serialise any MQTT 3.1.1 packet (both directions, so codec round trips can be tested)."""
    if isinstance(packet, Connect):
        flags = (0x02 if packet.clean_session else 0) | (0x80 if packet.username is not None else 0)
        flags |= 0x40 if packet.password is not None else 0
        payload = _string(packet.client_id)
        if packet.will_topic is not None:
            flags |= 0x04 | packet.will_qos << 3 | (0x20 if packet.will_retain else 0)
            payload += _string(packet.will_topic) + _binary(packet.will_message or b"")
        if packet.username is not None:
            payload += _string(packet.username)
        if packet.password is not None:
            payload += _binary(packet.password)
        header = _string(packet.protocol_name) + bytes([packet.protocol_level, flags])
        return _frame(CONNECT, 0, header + struct.pack("!H", packet.keep_alive) + payload)
    if isinstance(packet, ConnAck):
        return _frame(CONNACK, 0, bytes([int(packet.session_present), packet.return_code]))
    if isinstance(packet, Publish):
        flags = packet.qos << 1 | (0x08 if packet.dup else 0) | (0x01 if packet.retain else 0)
        body = _string(packet.topic)
        if packet.qos:
            body += struct.pack("!H", packet.packet_id or 0)
        return _frame(PUBLISH, flags, body + packet.payload)
    if isinstance(packet, PubAck):
        return _frame(PUBACK, 0, struct.pack("!H", packet.packet_id))
    if isinstance(packet, Subscribe):
        body = struct.pack("!H", packet.packet_id)
        body += b"".join(_string(topic) + bytes([qos]) for topic, qos in packet.topics)
        return _frame(SUBSCRIBE, 0x02, body)
    if isinstance(packet, SubAck):
        return _frame(SUBACK, 0, struct.pack("!H", packet.packet_id) + bytes(packet.return_codes))
    if isinstance(packet, Unsubscribe):
        body = struct.pack("!H", packet.packet_id) + b"".join(map(_string, packet.topics))
        return _frame(UNSUBSCRIBE, 0x02, body)
    if isinstance(packet, UnsubAck):
        return _frame(UNSUBACK, 0, struct.pack("!H", packet.packet_id))
    if isinstance(packet, PingReq):
        return _frame(PINGREQ, 0, b"")
    if isinstance(packet, PingResp):
        return _frame(PINGRESP, 0, b"")
    if isinstance(packet, Disconnect):
        return _frame(DISCONNECT, 0, b"")
    raise LocalProtocolError(f"{type(packet).__name__} is not an MQTT 3.1.1 packet")


# Decoding ---------------------------------------------------------------------------------


class _Reader:
    """Reads fields off one packet's body; running past its end is a protocol error."""

    def __init__(self, data: bytes) -> None:
        self.data = data
        self.offset = 0

    def take(self, count: int) -> bytes:
        if self.offset + count > len(self.data):
            raise RemoteProtocolError("packet ends in the middle of a field")
        chunk = self.data[self.offset : self.offset + count]
        self.offset += count
        return chunk

    def byte(self) -> int:
        return self.take(1)[0]

    def u16(self) -> int:
        value: int = struct.unpack("!H", self.take(2))[0]
        return value

    def binary(self) -> bytes:
        return self.take(self.u16())

    def string(self) -> str:
        """A UTF-8 string (1.5.3): well-formed, and without U+0000."""
        raw = self.binary()
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError:
            raise RemoteProtocolError("string is not well-formed UTF-8") from None
        if "\x00" in text:
            raise RemoteProtocolError("string contains U+0000")
        return text

    def rest(self) -> bytes:
        return self.take(len(self.data) - self.offset)

    @property
    def done(self) -> bool:
        return self.offset == len(self.data)


_REQUIRED_FLAGS = {SUBSCRIBE: 0x02, UNSUBSCRIBE: 0x02, PUBREL: 0x02}


def decode(packet_type: int, flags: int, body: bytes) -> Packet:
    """Decode one packet from its type, flags and body (any direction)."""
    if packet_type != PUBLISH and flags != _REQUIRED_FLAGS.get(packet_type, 0):
        raise RemoteProtocolError(f"reserved flags {flags:#x} on packet type {packet_type}")
    reader = _Reader(body)
    packet = _decode_body(packet_type, flags, reader)
    if not reader.done:
        raise RemoteProtocolError(
            f"{len(body) - reader.offset} stray bytes after packet {packet_type}"
        )
    return packet


def _decode_body(packet_type: int, flags: int, reader: _Reader) -> Packet:
    if packet_type == CONNECT:
        return _decode_connect(reader)
    if packet_type == CONNACK:
        session_present = reader.byte()
        if session_present > 1:
            raise RemoteProtocolError("reserved CONNACK flags")
        return ConnAck(reader.byte(), bool(session_present))
    if packet_type == PUBLISH:
        qos = flags >> 1 & 0x03
        if qos == 3:
            raise RemoteProtocolError("PUBLISH with QoS 3")
        topic = reader.string()
        if not topic or "+" in topic or "#" in topic:
            raise RemoteProtocolError("PUBLISH topic is empty or has wildcards")
        packet_id = reader.u16() if qos else None
        if packet_id == 0:
            raise RemoteProtocolError("packet identifier 0")
        return Publish(topic, reader.rest(), qos, packet_id, bool(flags & 1), bool(flags & 8))
    if packet_type == PUBACK:
        return PubAck(reader.u16())
    if packet_type == SUBSCRIBE:
        packet_id = _packet_id(reader)
        subscriptions = []
        while not reader.done:
            topic = reader.string()
            qos = reader.byte()
            if qos > 2 or not topic:
                raise RemoteProtocolError("bad SUBSCRIBE topic filter or QoS byte")
            subscriptions.append((topic, qos))
        if not subscriptions:
            raise RemoteProtocolError("SUBSCRIBE without topic filters")
        return Subscribe(packet_id, tuple(subscriptions))
    if packet_type == SUBACK:
        return SubAck(reader.u16(), tuple(reader.rest()))
    if packet_type == UNSUBSCRIBE:
        packet_id = _packet_id(reader)
        topics = []
        while not reader.done:
            topics.append(reader.string())
        if not topics:
            raise RemoteProtocolError("UNSUBSCRIBE without topic filters")
        return Unsubscribe(packet_id, tuple(topics))
    if packet_type == UNSUBACK:
        return UnsubAck(reader.u16())
    if packet_type == PINGREQ:
        return PingReq()
    if packet_type == PINGRESP:
        return PingResp()
    if packet_type == DISCONNECT:
        return Disconnect()
    raise RemoteProtocolError(f"packet type {packet_type} is not supported")


def _packet_id(reader: _Reader) -> int:
    packet_id = reader.u16()
    if packet_id == 0:
        raise RemoteProtocolError("packet identifier 0")
    return packet_id


def _decode_connect(reader: _Reader) -> Connect:
    name = reader.string()
    level = reader.byte()
    if name != PROTOCOL_NAME:
        raise RemoteProtocolError(f"protocol name {name!r} is not MQTT")
    if level != PROTOCOL_LEVEL:
        raise RemoteProtocolError(
            f"protocol level {level} is not 4 (MQTT 3.1.1)", UNACCEPTABLE_PROTOCOL_VERSION
        )
    flags = reader.byte()
    if flags & 0x01:
        raise RemoteProtocolError("reserved CONNECT flag set")
    will, will_qos, will_retain = bool(flags & 0x04), flags >> 3 & 0x03, bool(flags & 0x20)
    if will_qos == 3 or (not will and (will_qos or will_retain)):
        raise RemoteProtocolError("bad will flags")
    has_username, has_password = bool(flags & 0x80), bool(flags & 0x40)
    if has_password and not has_username:
        raise RemoteProtocolError("password without user name")
    keep_alive = reader.u16()
    client_id = reader.string()
    will_topic = reader.string() if will else None
    will_message = reader.binary() if will else None
    return Connect(
        client_id=client_id,
        username=reader.string() if has_username else None,
        password=reader.binary() if has_password else None,
        keep_alive=keep_alive,
        clean_session=bool(flags & 0x02),
        will_topic=will_topic,
        will_message=will_message,
        will_qos=will_qos,
        will_retain=will_retain,
    )


def take_frame(buffer: bytearray, max_packet_bytes: int) -> tuple[int, int, bytes] | None:
    """Cut the first whole packet off `buffer`: (type, flags, body), or None until it has
    arrived. Raises ProtocolError for a malformed length or a packet over the limit, as soon
    as the length says so (2.2.3)."""
    if not buffer:
        return None
    length, multiplier, position = 0, 1, 1
    while True:
        if position >= len(buffer):
            if position > 4:
                raise RemoteProtocolError("remaining length longer than four bytes")
            return None
        digit = buffer[position]
        length += (digit & 0x7F) * multiplier
        position += 1
        if not digit & 0x80:
            break
        multiplier *= 128
        if position > 4:
            raise RemoteProtocolError("remaining length longer than four bytes")
    if position + length > max_packet_bytes:
        raise RemoteProtocolError(
            f"packet of {position + length} bytes exceeds the {max_packet_bytes} limit"
        )
    if len(buffer) < position + length:
        return None
    first = buffer[0]
    body = bytes(buffer[position : position + length])
    del buffer[: position + length]
    return first >> 4, first & 0x0F, body


# The server side of one connection ----------------------------------------------------------


class State(Enum):
    AWAIT_CONNECT = "await-connect"
    CONNECTING = "connecting"  # CONNECT received, CONNACK not sent yet
    CONNECTED = "connected"
    CLOSED = "closed"


@dataclass
class ServerConnection:
    """One client connection as the server sees it: buffers bytes, enforces the rules.

    The application reads packets from `receive_data`, answers with `send`, and closes the
    transport when a `ProtocolError` is raised or `state` is CLOSED. A client may send packets
    right after CONNECT without waiting for CONNACK (3.1.4); they are returned in state
    CONNECTING, and the application holds them until it has accepted the connection.
    """

    max_packet_bytes: int = DEFAULT_MAX_PACKET_BYTES
    max_inflight: int = DEFAULT_MAX_INFLIGHT
    state: State = State.AWAIT_CONNECT
    keep_alive: int = 0
    _buffer: bytearray = field(default_factory=bytearray)
    _next_packet_id: int = 1
    _inflight: set[int] = field(default_factory=set)

    @property
    def keep_alive_timeout(self) -> float | None:
        """Seconds of silence after which the client is gone: 1.5 x its keep-alive (3.1.2.10)."""
        return self.keep_alive * 1.5 if self.keep_alive else None

    def receive_data(self, data: bytes) -> list[Packet]:
        """Feed bytes; returns the complete packets they finish, in order."""
        if self.state is State.CLOSED:
            raise LocalProtocolError("data after the connection closed")
        self._buffer += data
        packets = []
        while (frame := self._next_frame()) is not None:
            try:
                packet = decode(*frame)
            except RemoteProtocolError as error:
                if error.connack_code is not None:
                    if self.state is not State.AWAIT_CONNECT:
                        # no CONNACK for a second CONNECT (3.1.0-2)
                        raise RemoteProtocolError("a second CONNECT") from error
                    self.state = State.CONNECTING  # so that the refusing CONNACK can be sent
                raise
            self._check_order(packet)
            packets.append(packet)
            if isinstance(packet, Disconnect):
                self.state = State.CLOSED
                break
        return packets

    def _next_frame(self) -> tuple[int, int, bytes] | None:
        return take_frame(self._buffer, self.max_packet_bytes)

    def _check_order(self, packet: Packet) -> None:
        if self.state is State.AWAIT_CONNECT:
            if not isinstance(packet, Connect):
                raise RemoteProtocolError("the first packet must be CONNECT")
            self.keep_alive = packet.keep_alive
            self.state = State.CONNECTING
            return
        if isinstance(packet, Connect):
            raise RemoteProtocolError("a second CONNECT")
        if isinstance(packet, (ConnAck, SubAck, UnsubAck, PingResp)):
            raise RemoteProtocolError(f"{type(packet).__name__} is sent by servers, not clients")
        if isinstance(packet, Publish) and packet.qos == 2:
            raise RemoteProtocolError("QoS 2 publishing is not supported")
        if isinstance(packet, PubAck):
            self._inflight.discard(packet.packet_id)

    def send(self, packet: Packet) -> bytes:
        """Bytes for a packet to the client. A QoS 1 PUBLISH gets a packet id and is counted
        in flight until the client's PUBACK; past `max_inflight` the client is not reading."""
        if self.state is State.CLOSED:
            raise LocalProtocolError("send after the connection closed")
        if isinstance(packet, ConnAck):
            if self.state is not State.CONNECTING:
                raise LocalProtocolError("CONNACK before CONNECT, or twice")
            self.state = State.CONNECTED if packet.return_code == ACCEPTED else State.CLOSED
        elif self.state is not State.CONNECTED:
            raise LocalProtocolError("only CONNACK may be sent before the connection is accepted")
        if isinstance(packet, Publish) and packet.qos:
            if len(self._inflight) >= self.max_inflight:
                raise RemoteProtocolError(
                    f"more than {self.max_inflight} messages left unacknowledged"
                )
            packet = Publish(packet.topic, packet.payload, 1, self._allocate_packet_id())
            self._inflight.add(packet.packet_id or 0)
        return encode(packet)

    def _allocate_packet_id(self) -> int:
        while True:
            packet_id = self._next_packet_id
            self._next_packet_id = packet_id % 0xFFFF + 1
            if packet_id not in self._inflight:
                return packet_id

    def close(self) -> None:
        self.state = State.CLOSED
