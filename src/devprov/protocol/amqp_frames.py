"""AMQP 1.0 frames and what they carry: performatives, SASL frames, errors, outcomes, messages.

Part 2 (transport), 3 (messaging) and 5.3 (SASL) of the standard, as plain data. A performative
is a described list whose fields are positional; absent trailing fields are null. Decoding
checks that mandatory fields are present and that each field has the type the standard gives
it (raising `FieldError`, which the connection answers with `amqp:invalid-field` or
`amqp:decode-error`); optional fields left null stay None here and the connection applies the
standard's defaults. Termini and delivery states are kept as the described values they came
as, since a server only echoes them or reads one field.

One module on purpose (about 500 lines, most of them the performatives' field lists): the
frames are one table of the standard, read side by side with it.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass, field
from typing import Any, ClassVar, TypeVar

from devprov.protocol.amqp_types import (
    Array,
    DecodeError,
    Described,
    Symbol,
    UByte,
    UInt,
    ULong,
    UShort,
    decode_all,
    decode_value,
    encode,
)

AMQP_HEADER = b"AMQP\x00\x01\x00\x00"
SASL_HEADER = b"AMQP\x03\x01\x00\x00"
FRAME_AMQP, FRAME_SASL = 0, 1
FRAME_HEADER_BYTES = 8
MIN_MAX_FRAME_SIZE = 512

# Descriptor codes (ulong) of the composite types used here.
ERROR, RECEIVED, ACCEPTED, REJECTED, RELEASED, MODIFIED, SOURCE, TARGET = (
    0x1D, 0x23, 0x24, 0x25, 0x26, 0x27, 0x28, 0x29,
)  # fmt: skip
HEADER, DELIVERY_ANNOTATIONS, MESSAGE_ANNOTATIONS, PROPERTIES, APPLICATION_PROPERTIES = (
    0x70, 0x71, 0x72, 0x73, 0x74,
)  # fmt: skip
DATA, AMQP_SEQUENCE, AMQP_VALUE, FOOTER = 0x75, 0x76, 0x77, 0x78

# The symbolic descriptors a peer may use instead of the codes.
_SYMBOLIC = {
    "amqp:open:list": 0x10, "amqp:begin:list": 0x11, "amqp:attach:list": 0x12,
    "amqp:flow:list": 0x13, "amqp:transfer:list": 0x14, "amqp:disposition:list": 0x15,
    "amqp:detach:list": 0x16, "amqp:end:list": 0x17, "amqp:close:list": 0x18,
    "amqp:sasl-mechanisms:list": 0x40, "amqp:sasl-init:list": 0x41,
    "amqp:sasl-challenge:list": 0x42, "amqp:sasl-response:list": 0x43,
    "amqp:sasl-outcome:list": 0x44, "amqp:error:list": ERROR, "amqp:received:list": RECEIVED,
    "amqp:accepted:list": ACCEPTED, "amqp:rejected:list": REJECTED,
    "amqp:released:list": RELEASED, "amqp:modified:list": MODIFIED,
    "amqp:source:list": SOURCE, "amqp:target:list": TARGET, "amqp:header:list": HEADER,
    "amqp:delivery-annotations:map": DELIVERY_ANNOTATIONS,
    "amqp:message-annotations:map": MESSAGE_ANNOTATIONS, "amqp:properties:list": PROPERTIES,
    "amqp:application-properties:map": APPLICATION_PROPERTIES, "amqp:data:binary": DATA,
    "amqp:amqp-sequence:list": AMQP_SEQUENCE, "amqp:amqp-value:*": AMQP_VALUE,
    "amqp:footer:map": FOOTER,
}  # fmt: skip


class FieldError(DecodeError):
    """A well-encoded frame whose fields break the standard (answered amqp:invalid-field)."""


def descriptor_code(value: Any) -> int | None:
    """The numeric descriptor of a described value, whichever way it was written."""
    if not isinstance(value, Described):
        return None
    if isinstance(value.descriptor, Symbol):
        return _SYMBOLIC.get(value.descriptor)
    if isinstance(value.descriptor, int) and not isinstance(value.descriptor, bool):
        return int(value.descriptor)
    return None


# Field kinds: how a field is checked when read and typed when written.
_UINTS = {"uint": (UInt, 0xFFFFFFFF), "ushort": (UShort, 0xFFFF), "ubyte": (UByte, 0xFF)}
_UINTS["ulong"] = (ULong, 0xFFFFFFFFFFFFFFFF)


def _check(kind: str, value: Any, name: str) -> Any:
    """A decoded field value of `kind`, or FieldError."""
    if kind in _UINTS:
        if isinstance(value, int) and not isinstance(value, bool) and 0 <= value <= _UINTS[kind][1]:
            return int(value)
    elif kind == "bool":
        if isinstance(value, bool):
            return value
    elif kind in ("string", "symbol"):
        if isinstance(value, str):
            return str(value)
    elif kind == "binary":
        if isinstance(value, bytes):
            return value
    elif kind == "symbols":  # multiple="true": one symbol, or an array of them
        if isinstance(value, str):
            return (str(value),)
        if isinstance(value, list) and all(isinstance(item, str) for item in value):
            return tuple(str(item) for item in value)
    elif kind == "map":
        if isinstance(value, dict):
            return value
    elif kind == "error":
        return AmqpError.from_described(value)
    elif kind == "described":
        if isinstance(value, Described):
            return value
    else:  # "any"
        return value
    raise FieldError(f"field {name} is not a valid {kind}")


def _typed(kind: str, value: Any) -> Any:
    """A field value typed for encoding."""
    if value is None:
        return None
    if kind in _UINTS:
        return _UINTS[kind][0](value)
    if kind == "symbol":
        return Symbol(value)
    if kind == "symbols":
        return Array(Symbol, [Symbol(item) for item in value])
    if kind == "error":
        return value.described()
    return value


@dataclass(frozen=True)
class AmqpError:
    """The `error` composite (2.8.14): a condition, a description, and info."""

    condition: str
    description: str | None = None
    info: dict[Any, Any] | None = None

    @classmethod
    def from_described(cls, value: Any) -> AmqpError:
        if descriptor_code(value) != ERROR or not isinstance(value.value, list):
            raise FieldError("error is not an amqp:error:list")
        items = [*value.value, None, None, None]
        condition = _check("symbol", items[0], "condition") if items[0] is not None else None
        if condition is None:
            raise FieldError("error without a condition")
        description = _check("string", items[1], "description") if items[1] is not None else None
        info = _check("map", items[2], "info") if items[2] is not None else None
        return cls(condition, description, info)

    def described(self) -> Described:
        items: list[Any] = [Symbol(self.condition), self.description, self.info]
        while items and items[-1] is None:
            items.pop()
        return Described(ULong(ERROR), items)


class Performative:
    """A frame body: a described list of the fields declared by a subclass, in order."""

    __slots__ = ()

    CODE: ClassVar[int]
    # (field name, kind, mandatory), in the standard's order.
    SPEC: ClassVar[tuple[tuple[str, str, bool], ...]]

    def encode(self) -> bytes:
        try:
            cached = _encoded.get(self)
        except TypeError:  # it holds a map or a list: not worth remembering
            return self._encode()
        if cached is None:
            cached = _remember(_encoded, self, self._encode())
        return cached

    def _encode(self) -> bytes:
        items = []
        for name, kind, _ in self.SPEC:
            value = getattr(self, name)
            items.append(None if value is None else _typed(kind, value))
        while items and items[-1] is None:
            items.pop()
        return encode(Described(ULong(self.CODE), items))


# Devices send the same small frames over and over (flows, detaches, the start of a transfer)
# and get the same answers: looking one up costs a fraction of decoding or encoding it.
_CACHE_LIMIT = 4096
_CACHED_BYTES = 64
_encoded: dict[Performative, bytes] = {}
_decoded: dict[tuple[int, bytes], Performative] = {}
K = TypeVar("K")
V = TypeVar("V")


def _remember(cache: dict[K, V], key: K, value: V) -> V:
    if len(cache) >= _CACHE_LIMIT:
        cache.clear()
    cache[key] = value
    return value


def _decode_performative(cls: type[Performative], items: list[Any]) -> Performative:
    values: dict[str, Any] = {}
    for position, (name, kind, mandatory) in enumerate(cls.SPEC):
        raw = items[position] if position < len(items) else None
        if raw is None:
            if mandatory:
                raise FieldError(f"{cls.__name__.lower()} has no {name}")
            values[name] = None
        else:
            values[name] = _check(kind, raw, name)
    return cls(**values)


@dataclass(slots=True, unsafe_hash=True)
class Open(Performative):
    CODE = 0x10
    SPEC = (
        ("container_id", "string", True), ("hostname", "string", False),
        ("max_frame_size", "uint", False), ("channel_max", "ushort", False),
        ("idle_time_out", "uint", False), ("outgoing_locales", "symbols", False),
        ("incoming_locales", "symbols", False), ("offered_capabilities", "symbols", False),
        ("desired_capabilities", "symbols", False), ("properties", "map", False),
    )  # fmt: skip
    container_id: str
    hostname: str | None = None
    max_frame_size: int | None = None
    channel_max: int | None = None
    idle_time_out: int | None = None
    outgoing_locales: tuple[str, ...] | None = None
    incoming_locales: tuple[str, ...] | None = None
    offered_capabilities: tuple[str, ...] | None = None
    desired_capabilities: tuple[str, ...] | None = None
    properties: dict[Any, Any] | None = None


@dataclass(slots=True, unsafe_hash=True)
class Begin(Performative):
    CODE = 0x11
    SPEC = (
        ("remote_channel", "ushort", False), ("next_outgoing_id", "uint", True),
        ("incoming_window", "uint", True), ("outgoing_window", "uint", True),
        ("handle_max", "uint", False), ("offered_capabilities", "symbols", False),
        ("desired_capabilities", "symbols", False), ("properties", "map", False),
    )  # fmt: skip
    remote_channel: int | None
    next_outgoing_id: int
    incoming_window: int
    outgoing_window: int
    handle_max: int | None = None
    offered_capabilities: tuple[str, ...] | None = None
    desired_capabilities: tuple[str, ...] | None = None
    properties: dict[Any, Any] | None = None


@dataclass(slots=True, unsafe_hash=True)
class Attach(Performative):
    CODE = 0x12
    SPEC = (
        ("name", "string", True), ("handle", "uint", True), ("role", "bool", True),
        ("snd_settle_mode", "ubyte", False), ("rcv_settle_mode", "ubyte", False),
        ("source", "described", False), ("target", "described", False),
        ("unsettled", "map", False), ("incomplete_unsettled", "bool", False),
        ("initial_delivery_count", "uint", False), ("max_message_size", "ulong", False),
        ("offered_capabilities", "symbols", False), ("desired_capabilities", "symbols", False),
        ("properties", "map", False),
    )  # fmt: skip
    name: str
    handle: int
    role: bool  # True: the sender of this frame is the link's receiver
    snd_settle_mode: int | None = None
    rcv_settle_mode: int | None = None
    source: Described | None = None
    target: Described | None = None
    unsettled: dict[Any, Any] | None = None
    incomplete_unsettled: bool | None = None
    initial_delivery_count: int | None = None
    max_message_size: int | None = None
    offered_capabilities: tuple[str, ...] | None = None
    desired_capabilities: tuple[str, ...] | None = None
    properties: dict[Any, Any] | None = None


@dataclass(slots=True, unsafe_hash=True)
class Flow(Performative):
    CODE = 0x13
    SPEC = (
        ("next_incoming_id", "uint", False), ("incoming_window", "uint", True),
        ("next_outgoing_id", "uint", True), ("outgoing_window", "uint", True),
        ("handle", "uint", False), ("delivery_count", "uint", False),
        ("link_credit", "uint", False), ("available", "uint", False), ("drain", "bool", False),
        ("echo", "bool", False), ("properties", "map", False),
    )  # fmt: skip
    next_incoming_id: int | None
    incoming_window: int
    next_outgoing_id: int
    outgoing_window: int
    handle: int | None = None
    delivery_count: int | None = None
    link_credit: int | None = None
    available: int | None = None
    drain: bool | None = None
    echo: bool | None = None
    properties: dict[Any, Any] | None = None


@dataclass(slots=True, unsafe_hash=True)
class Transfer(Performative):
    CODE = 0x14
    SPEC = (
        ("handle", "uint", True), ("delivery_id", "uint", False),
        ("delivery_tag", "binary", False), ("message_format", "uint", False),
        ("settled", "bool", False), ("more", "bool", False), ("rcv_settle_mode", "ubyte", False),
        ("state", "described", False), ("resume", "bool", False), ("aborted", "bool", False),
        ("batchable", "bool", False),
    )  # fmt: skip
    handle: int
    delivery_id: int | None = None
    delivery_tag: bytes | None = None
    message_format: int | None = None
    settled: bool | None = None
    more: bool | None = None
    rcv_settle_mode: int | None = None
    state: Described | None = None
    resume: bool | None = None
    aborted: bool | None = None
    batchable: bool | None = None


@dataclass(slots=True, unsafe_hash=True)
class Disposition(Performative):
    CODE = 0x15
    SPEC = (
        ("role", "bool", True), ("first", "uint", True), ("last", "uint", False),
        ("settled", "bool", False), ("state", "described", False), ("batchable", "bool", False),
    )  # fmt: skip
    role: bool
    first: int
    last: int | None = None
    settled: bool | None = None
    state: Described | None = None
    batchable: bool | None = None


@dataclass(slots=True, unsafe_hash=True)
class Detach(Performative):
    CODE = 0x16
    SPEC = (("handle", "uint", True), ("closed", "bool", False), ("error", "error", False))
    handle: int
    closed: bool | None = None
    error: AmqpError | None = None


@dataclass(slots=True, unsafe_hash=True)
class End(Performative):
    CODE = 0x17
    SPEC = (("error", "error", False),)
    error: AmqpError | None = None


@dataclass(slots=True, unsafe_hash=True)
class Close(Performative):
    CODE = 0x18
    SPEC = (("error", "error", False),)
    error: AmqpError | None = None


@dataclass(slots=True, unsafe_hash=True)
class SaslMechanisms(Performative):
    CODE = 0x40
    SPEC = (("mechanisms", "symbols", True),)
    mechanisms: tuple[str, ...]


@dataclass(slots=True, unsafe_hash=True)
class SaslInit(Performative):
    CODE = 0x41
    SPEC = (
        ("mechanism", "symbol", True), ("initial_response", "binary", False),
        ("hostname", "string", False),
    )  # fmt: skip
    mechanism: str
    initial_response: bytes | None = None
    hostname: str | None = None


@dataclass(slots=True, unsafe_hash=True)
class SaslChallenge(Performative):
    CODE = 0x42
    SPEC = (("challenge", "binary", True),)
    challenge: bytes


@dataclass(slots=True, unsafe_hash=True)
class SaslResponse(Performative):
    CODE = 0x43
    SPEC = (("response", "binary", True),)
    response: bytes


@dataclass(slots=True, unsafe_hash=True)
class SaslOutcome(Performative):
    CODE = 0x44
    SPEC = (("code", "ubyte", True), ("additional_data", "binary", False))
    code: int
    additional_data: bytes | None = None


AMQP_PERFORMATIVES: dict[int, type[Performative]] = {
    cls.CODE: cls for cls in (Open, Begin, Attach, Flow, Transfer, Disposition, Detach, End, Close)
}
SASL_PERFORMATIVES: dict[int, type[Performative]] = {
    cls.CODE: cls for cls in (SaslMechanisms, SaslInit, SaslChallenge, SaslResponse, SaslOutcome)
}


# Frames -------------------------------------------------------------------------------------


def frame(frame_type: int, channel: int, body: bytes) -> bytes:
    """One frame: size, data offset 2 (no extended header), type, channel, body."""
    return struct.pack(">IBBH", FRAME_HEADER_BYTES + len(body), 2, frame_type, channel) + body


def decode_body(frame_type: int, body: bytes) -> tuple[Performative, bytes]:
    """A frame body's performative, and the payload after it (a transfer's message bytes)."""
    size = _small_performative_size(body)
    if size:
        cached = _decoded.get((frame_type, body[:size]))
        if cached is not None:
            if size != len(body) and not isinstance(cached, Transfer):
                raise DecodeError(f"{len(body) - size} stray bytes after the performative")
            return cached, body[size:]
    performative, payload = _decode_body(frame_type, body)
    if size:
        _remember(_decoded, (frame_type, body[:size]), performative)
    return performative, payload


def _small_performative_size(body: bytes) -> int:
    """The length of a performative written with a small descriptor and short list, from its
    list header (0 when it is not one: then it is not looked up)."""
    if len(body) < 5 or body[0] != 0 or body[1] != 0x53:
        return 0
    constructor = body[3]
    if constructor == 0x45:
        size = 4
    elif constructor == 0xC0:
        size = 5 + body[4]
    elif constructor == 0xD0 and len(body) >= 8:
        size = 8 + int.from_bytes(body[4:8], "big")
    else:
        return 0
    return size if size <= min(_CACHED_BYTES, len(body)) else 0


def _decode_body(frame_type: int, body: bytes) -> tuple[Performative, bytes]:
    described, end = decode_value(body)
    code = descriptor_code(described)
    table = SASL_PERFORMATIVES if frame_type == FRAME_SASL else AMQP_PERFORMATIVES
    cls = table.get(code) if code is not None else None
    if cls is None:
        raise DecodeError("frame body is not a performative of its frame type")
    if not isinstance(described.value, list):
        raise FieldError(f"{cls.__name__.lower()} is not a list")
    performative = _decode_performative(cls, described.value)
    if end != len(body) and not isinstance(performative, Transfer):
        raise DecodeError(f"{len(body) - end} stray bytes after {cls.__name__.lower()}")
    return performative, body[end:]


# Termini, delivery states and messages -----------------------------------------------------


def terminus_address(terminus: Described | None) -> str | None:
    """The address of a source or target, when it is a string."""
    if terminus is None or descriptor_code(terminus) not in (SOURCE, TARGET):
        return None
    items = terminus.value if isinstance(terminus.value, list) else []
    address = items[0] if items else None
    return str(address) if isinstance(address, str) else None


def terminus(code: int, address: str | None) -> Described:
    return Described(ULong(code), [address] if address is not None else [])


def accepted() -> Described:
    return Described(ULong(ACCEPTED), [])


def rejected(error: AmqpError) -> Described:
    return Described(ULong(REJECTED), [error.described()])


@dataclass(frozen=True)
class Message:
    """The parts of a bare message (3.2) this server reads and writes."""

    message_id: Any = None
    correlation_id: Any = None
    application_properties: dict[str, Any] = field(default_factory=dict)
    data: bytes | None = None  # the data sections, joined; None when the body is not data
    value: Any = None  # an amqp-value body, or an amqp-sequence's lists

    def encode(self) -> bytes:
        out = bytearray()
        if self.message_id is not None or self.correlation_id is not None:
            properties: list[Any] = [self.message_id, None, None, None, None, self.correlation_id]
            while properties and properties[-1] is None:
                properties.pop()
            out += encode(Described(ULong(PROPERTIES), properties))
        if self.application_properties:
            out += encode(Described(ULong(APPLICATION_PROPERTIES), self.application_properties))
        if self.data is not None:
            out += encode(Described(ULong(DATA), self.data))
        elif self.value is not None:
            out += encode(Described(ULong(AMQP_VALUE), self.value))
        return bytes(out)


def decode_message(payload: bytes) -> Message:
    """A message from a delivery's bytes; raises DecodeError for anything malformed."""
    properties: list[Any] = []
    application: dict[str, Any] = {}
    data: list[bytes] = []
    value: Any = None
    for section in decode_all(payload):
        code = descriptor_code(section)
        content = section.value if isinstance(section, Described) else None
        if code == PROPERTIES and isinstance(content, list):
            properties = content
        elif code == APPLICATION_PROPERTIES and isinstance(content, dict):
            if not all(isinstance(key, str) for key in content):
                raise FieldError("application-properties keys must be strings")
            application = {str(key): item for key, item in content.items()}
        elif code == DATA and isinstance(content, bytes):
            data.append(content)
        elif code == AMQP_VALUE:
            value = content
        elif code == AMQP_SEQUENCE and isinstance(content, list):
            value = [*(value or []), *content]
        elif code in (HEADER, DELIVERY_ANNOTATIONS, MESSAGE_ANNOTATIONS, FOOTER):
            continue
        else:
            raise DecodeError("a message section is not one of the standard's")
    return Message(
        message_id=properties[0] if properties else None,
        correlation_id=properties[5] if len(properties) > 5 else None,
        application_properties=application,
        data=b"".join(data) if data else None,
        value=value,
    )
