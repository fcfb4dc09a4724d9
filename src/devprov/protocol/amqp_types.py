"""The AMQP 1.0 type system (part 1 of the standard): values to bytes and back, pure.

Every type is decoded, whatever encoding a peer chose (the SDKs differ: rhea writes `list8`,
the C SDK `list32`, .NET compact integers). Integers keep their AMQP type through small `int`
subclasses (`UInt(5)` is 5 to Python but is written back as a uint), so a decoded value
encodes to the same type. Maps become dicts, so their keys must be hashable: a map keyed by a
list or a map is refused as a decode error (no DPS client sends one).

Decoding is bounded: a value nests at most `MAX_DEPTH` deep, a size or count never reaches
past the bytes given, and an array of zero-width elements (nulls, true, false) holds at most
`MAX_EMPTY_ELEMENTS`; anything else raises `DecodeError`, never another exception.

One module on purpose (about 500 lines): the encoder and the decoder are the two halves of
the standard's one table of types and constructors.
"""

from __future__ import annotations

import struct
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

MAX_DEPTH = 32
MAX_EMPTY_ELEMENTS = 256


class DecodeError(ValueError):
    """The bytes are not a well-formed AMQP value."""


class EncodeError(ValueError):
    """The value has no AMQP encoding (our own mistake)."""


class UByte(int):
    __slots__ = ()


class UShort(int):
    __slots__ = ()


class UInt(int):
    __slots__ = ()


class ULong(int):
    __slots__ = ()


class Byte(int):
    __slots__ = ()


class Short(int):
    __slots__ = ()


class Int(int):
    __slots__ = ()


class Long(int):
    """A signed 64-bit integer; a plain Python `int` is written as one too."""

    __slots__ = ()


class Timestamp(int):
    """Milliseconds since the Unix epoch."""

    __slots__ = ()


class Float(float):
    """A 32-bit float; a plain Python `float` is a double."""

    __slots__ = ()


class Symbol(str):
    """An ASCII symbolic value (mechanism names, descriptors, error conditions)."""

    __slots__ = ()


class Char(str):
    """One UTF-32 character."""

    __slots__ = ()


@dataclass(frozen=True)
class Decimal:
    """An IEEE 754 decimal, kept as its bytes (devprov never computes with one)."""

    raw: bytes


class Array(list[Any]):
    """An AMQP array: elements of one type, named by `element` (a type above, or str, bytes…)."""

    def __init__(self, element: type, items: Any = ()) -> None:
        super().__init__(items)
        self.element = element


@dataclass(frozen=True)
class Described:
    """A described value: a descriptor (ulong code or symbol) and the value it describes.

    Hashable when its value is made of hashable values and lists (outcomes and termini are
    lists), so the frames carrying one can be remembered once encoded."""

    descriptor: Any
    value: Any

    def __hash__(self) -> int:
        value = tuple(self.value) if isinstance(self.value, list) else self.value
        return hash((self.descriptor, value))


# Encoding ---------------------------------------------------------------------------------


def encode(value: Any) -> bytes:
    """The bytes of one value, in its most compact encoding."""
    out = bytearray()
    _encode_into(out, value)
    return bytes(out)


def _encode_into(out: bytearray, value: Any) -> None:
    writer = _WRITERS.get(type(value))
    if writer is None:
        writer = _writer_for(type(value))
    writer(out, value)


def _writer_for(kind: type) -> Callable[[bytearray, Any], None]:
    """The writer of the nearest known base type (a subclass of str, int, list…)."""
    for base in kind.__mro__:
        if base in _WRITERS and base is not object:
            _WRITERS[kind] = _WRITERS[base]
            return _WRITERS[base]
    raise EncodeError(f"{kind.__name__} has no AMQP encoding")


def _write_none(out: bytearray, value: Any) -> None:
    out.append(0x40)


def _write_bool(out: bytearray, value: Any) -> None:
    out.append(0x41 if value else 0x42)


def _write_fixed(code: int, form: str) -> Callable[[bytearray, Any], None]:
    def write(out: bytearray, value: Any) -> None:
        out.append(code)
        out += _pack(form, value)

    return write


def _write_unsigned(
    zero: int, small: int, wide: int, form: str
) -> Callable[[bytearray, Any], None]:
    def write(out: bytearray, value: Any) -> None:
        if value == 0:
            out.append(zero)
        elif 0 < value < 256:
            out += bytes((small, value))
        else:
            out.append(wide)
            out += _pack(form, value)

    return write


def _write_signed(small: int, wide: int, form: str) -> Callable[[bytearray, Any], None]:
    def write(out: bytearray, value: Any) -> None:
        if -128 <= value <= 127:
            out += bytes((small, value & 0xFF))
        else:
            out.append(wide)
            out += _pack(form, value)

    return write


def _write_decimal(out: bytearray, value: Any) -> None:
    codes = {4: 0x74, 8: 0x84, 16: 0x94}
    if len(value.raw) not in codes:
        raise EncodeError("a decimal is 4, 8 or 16 bytes")
    out.append(codes[len(value.raw)])
    out += value.raw


def _write_uuid(out: bytearray, value: Any) -> None:
    out.append(0x98)
    out += value.bytes


def _write_binary(out: bytearray, value: Any) -> None:
    _variable(out, bytes(value), 0xA0, 0xB0)


def _write_symbol(out: bytearray, value: Any) -> None:
    _variable(out, _ascii(value), 0xA3, 0xB3)


def _write_char(out: bytearray, value: Any) -> None:
    out.append(0x73)
    out += _pack(">I", _char_code(value))


def _write_string(out: bytearray, value: Any) -> None:
    _variable(out, value.encode("utf-8"), 0xA1, 0xB1)


def _write_described(out: bytearray, value: Any) -> None:
    out.append(0x00)
    _encode_into(out, value.descriptor)
    _encode_into(out, value.value)


def _pack(form: str, *values: Any) -> bytes:
    try:
        return struct.pack(form, *values)
    except struct.error as error:
        raise EncodeError(f"{values!r} do not fit {form}: {error}") from None


def _ascii(text: str) -> bytes:
    try:
        return text.encode("ascii")
    except UnicodeEncodeError:
        raise EncodeError(f"symbol {text!r} is not ASCII") from None


def _char_code(text: str) -> int:
    if len(text) != 1:
        raise EncodeError("a char is one character")
    return ord(text)


def _variable(out: bytearray, raw: bytes, short_code: int, long_code: int) -> None:
    if len(raw) < 256:
        out += bytes((short_code, len(raw)))
    else:
        out.append(long_code)
        out += _pack(">I", len(raw))
    out += raw


def _compound(out: bytearray, body: bytes, count: int, short_code: int, long_code: int) -> None:
    if len(body) + 1 < 256 and count < 256:
        out += bytes((short_code, len(body) + 1, count))
    else:
        out.append(long_code)
        out += _pack(">II", len(body) + 4, count)
    out += body


def _encode_list(out: bytearray, items: list[Any]) -> None:
    if not items:
        out.append(0x45)
        return
    body = bytearray()
    for item in items:
        # Performatives are mostly nulls, booleans and small uints: written in line.
        if item is None:
            body.append(0x40)
        elif item is True:
            body.append(0x41)
        elif item is False:
            body.append(0x42)
        elif type(item) is UInt and 0 < item < 256:
            body += bytes((0x52, item))
        else:
            _encode_into(body, item)
    _compound(out, bytes(body), len(items), 0xC0, 0xD0)


def _encode_map(out: bytearray, mapping: dict[Any, Any]) -> None:
    body = bytearray()
    for key, item in mapping.items():
        _encode_into(body, key)
        _encode_into(body, item)
    _compound(out, bytes(body), 2 * len(mapping), 0xC1, 0xD1)


# An array's elements share one constructor: the full-width one of their type.
_ARRAY_CODES: dict[type, int] = {
    UByte: 0x50, UShort: 0x60, UInt: 0x70, ULong: 0x80, Byte: 0x51, Short: 0x61, Int: 0x71,
    Long: 0x81, int: 0x81, Timestamp: 0x83, Float: 0x72, float: 0x82, bool: 0x56,
    uuid.UUID: 0x98, bytes: 0xB0, str: 0xB1, Symbol: 0xB3, Char: 0x73, list: 0xD0, dict: 0xD1,
}  # fmt: skip


def _encode_array(out: bytearray, array: Array) -> None:
    code = _ARRAY_CODES.get(array.element)
    if code is None:
        raise EncodeError(f"no array of {array.element.__name__}")
    body = bytearray((code,))
    for item in array:
        if not isinstance(item, array.element) or (array.element is int and item is True):
            raise EncodeError(f"{item!r} in an array of {array.element.__name__}")
        body += _element(code, item)
    _compound(out, bytes(body), len(array), 0xE0, 0xF0)


def _element(code: int, item: Any) -> bytes:
    """One array element's bytes, without a constructor, in the width of `code`."""
    if code == 0x73:
        return _pack(">I", _char_code(item))
    if code in _FIXED_DECODE:
        return _pack(_FIXED_DECODE[code][1], item)
    if code == 0x56:
        return b"\x01" if item else b"\x00"
    if code == 0x98:
        return bytes(item.bytes)
    if code in (0xB0, 0xB1, 0xB3):
        raw = bytes(item) if code == 0xB0 else _ascii(item) if code == 0xB3 else item.encode()
        return _pack(">I", len(raw)) + raw
    body = bytearray()
    pairs = list(item.items()) if code == 0xD1 else [(value,) for value in item]
    for pair in pairs:
        for value in pair:
            _encode_into(body, value)
    return _pack(">II", len(body) + 4, len(pairs) * (2 if code == 0xD1 else 1)) + body


# Writers by exact type; a subclass takes its nearest base's writer (see _writer_for).
_WRITERS: dict[type, Callable[[bytearray, Any], None]] = {
    type(None): _write_none,
    bool: _write_bool,
    UByte: _write_fixed(0x50, ">B"),
    UShort: _write_fixed(0x60, ">H"),
    Byte: _write_fixed(0x51, ">b"),
    Short: _write_fixed(0x61, ">h"),
    Timestamp: _write_fixed(0x83, ">q"),
    Float: _write_fixed(0x72, ">f"),
    float: _write_fixed(0x82, ">d"),
    UInt: _write_unsigned(0x43, 0x52, 0x70, ">I"),
    ULong: _write_unsigned(0x44, 0x53, 0x80, ">Q"),
    Int: _write_signed(0x54, 0x71, ">i"),
    Long: _write_signed(0x55, 0x81, ">q"),
    int: _write_signed(0x55, 0x81, ">q"),
    Decimal: _write_decimal,
    uuid.UUID: _write_uuid,
    bytes: _write_binary,
    bytearray: _write_binary,
    memoryview: _write_binary,
    Symbol: _write_symbol,
    Char: _write_char,
    str: _write_string,
    Array: lambda out, value: _encode_array(out, value),
    list: lambda out, value: _encode_list(out, value),
    dict: lambda out, value: _encode_map(out, value),
    Described: _write_described,
}


# Decoding ---------------------------------------------------------------------------------
#
# Every reader takes the bytes, the position after the constructor and `limit`, the end of
# the innermost compound holding the value, so no value can run past its container. The
# constructors performatives are made of are read in line: a function call per field would
# cost more than the field.

_Parsed = tuple[Any, int]
_PAST_END = "value runs past the end of its bytes"
_UINT0, _ULONG0 = UInt(0), ULong(0)

# Fixed-width constructors: (byte width, struct format, wrapper).
_FIXED_DECODE: dict[int, tuple[int, str, Any]] = {
    0x50: (1, ">B", UByte),
    0x60: (2, ">H", UShort),
    0x70: (4, ">I", UInt),
    0x52: (1, ">B", UInt),
    0x80: (8, ">Q", ULong),
    0x53: (1, ">B", ULong),
    0x51: (1, ">b", Byte),
    0x61: (2, ">h", Short),
    0x71: (4, ">i", Int),
    0x54: (1, ">b", Int),
    0x81: (8, ">q", Long),
    0x55: (1, ">b", Long),
    0x72: (4, ">f", Float),
    0x82: (8, ">d", float),
    0x83: (8, ">q", Timestamp),
}
_UNPACK = {code: struct.Struct(form).unpack_from for code, (_, form, _) in _FIXED_DECODE.items()}
_EMPTY = (0x40, 0x41, 0x42, 0x43, 0x44, 0x45)
_COMPOUND = (0xC0, 0xC1, 0xD0, 0xD1, 0xE0, 0xF0)
_OTHER_WIDTHS = {0x56: 1, 0x73: 4, 0x98: 16, 0x74: 4, 0x84: 8, 0x94: 16}
_U32 = struct.Struct(">I").unpack_from
_U32_PAIR = struct.Struct(">II").unpack_from


def decode_value(data: bytes, offset: int = 0) -> _Parsed:
    """Decode the value at `offset`; returns it and the offset just past it."""
    return _value(data, offset, len(data), 0)


def decode_all(data: bytes) -> list[Any]:
    """Every value in `data`, one after the other (a message's sections)."""
    values, offset, limit = [], 0, len(data)
    while offset < limit:
        value, offset = _value(data, offset, limit, 0)
        values.append(value)
    return values


def _value(data: bytes, offset: int, limit: int, depth: int) -> _Parsed:
    if offset >= limit:
        raise DecodeError(_PAST_END)
    code = data[offset]
    offset += 1
    if code == 0x40:
        return None, offset
    if code == 0xA1 or code == 0xA3 or code == 0xA0:
        if offset >= limit:
            raise DecodeError(_PAST_END)
        end = offset + 1 + data[offset]
        if end > limit:
            raise DecodeError(_PAST_END)
        raw = data[offset + 1 : end]
        return (raw if code == 0xA0 else _utf8(raw) if code == 0xA1 else _symbol(raw)), end
    if code == 0x52 or code == 0x53:
        if offset >= limit:
            raise DecodeError(_PAST_END)
        return (UInt if code == 0x52 else ULong)(data[offset]), offset + 1
    if code == 0x00:
        if depth >= MAX_DEPTH:
            raise DecodeError(f"values nested more than {MAX_DEPTH} deep")
        descriptor, offset = _value(data, offset, limit, depth + 1)
        value, offset = _value(data, offset, limit, depth + 1)
        return Described(descriptor, value), offset
    if 0x41 <= code <= 0x45:
        return (True, False, _UINT0, _ULONG0, [])[code - 0x41], offset
    if code in _COMPOUND:
        if depth >= MAX_DEPTH:
            raise DecodeError(f"values nested more than {MAX_DEPTH} deep")
        return _compound_value(data, code, offset, limit, depth + 1)
    return _body(data, code, offset, limit, depth)


def _body(data: bytes, code: int, offset: int, limit: int, depth: int) -> _Parsed:
    """The value of constructor `code` whose bytes start at `offset` (arrays call this for
    each element, which has no constructor of its own)."""
    if code in _EMPTY:
        return (None, True, False, _UINT0, _ULONG0, [])[code - 0x40], offset
    fixed = _FIXED_DECODE.get(code)
    if fixed is not None:
        end = offset + fixed[0]
        if end > limit:
            raise DecodeError(_PAST_END)
        return fixed[2](_UNPACK[code](data, offset)[0]), end
    if code in _COMPOUND:
        if depth >= MAX_DEPTH:
            raise DecodeError(f"values nested more than {MAX_DEPTH} deep")
        return _compound_value(data, code, offset, limit, depth + 1)
    if code in (0xA0, 0xA1, 0xA3, 0xB0, 0xB1, 0xB3):
        short = code < 0xB0
        if offset + (1 if short else 4) > limit:
            raise DecodeError(_PAST_END)
        start = offset + (1 if short else 4)
        end = start + (data[offset] if short else _U32(data, offset)[0])
        if end > limit:
            raise DecodeError(_PAST_END)
        raw = data[start:end]
        kind = code & 0x0F
        return (raw if kind == 0 else _utf8(raw) if kind == 1 else _symbol(raw)), end
    width = _OTHER_WIDTHS.get(code)
    if width is None:
        raise DecodeError(f"unknown constructor 0x{code:02x}")
    end = offset + width
    if end > limit:
        raise DecodeError(_PAST_END)
    raw = data[offset:end]
    if code == 0x56:
        if raw[0] > 1:
            raise DecodeError("boolean byte is neither 0 nor 1")
        return raw[0] == 1, end
    if code == 0x98:
        return uuid.UUID(bytes=raw), end
    if code == 0x73:
        return _char(_U32(raw)[0]), end
    return Decimal(raw), end


def _char(raw: int) -> Char:
    if raw > 0x10FFFF or 0xD800 <= raw <= 0xDFFF:
        raise DecodeError("char is not a Unicode scalar value")
    return Char(chr(raw))


def _utf8(raw: bytes) -> str:
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        raise DecodeError("string is not well-formed UTF-8") from None


def _symbol(raw: bytes) -> Symbol:
    try:
        return Symbol(raw.decode("ascii"))
    except UnicodeDecodeError:
        raise DecodeError("symbol is not well-formed ASCII") from None


def _compound_value(data: bytes, code: int, offset: int, limit: int, depth: int) -> _Parsed:
    wide = code in (0xD0, 0xD1, 0xF0)
    width = 4 if wide else 1
    if offset + 2 * width > limit:
        raise DecodeError(_PAST_END)
    if wide:
        size, count = _U32_PAIR(data, offset)
    else:
        size, count = data[offset], data[offset + 1]
    if size < width:
        raise DecodeError("compound size smaller than its count")
    end = offset + width + size
    if end > limit:
        raise DecodeError(_PAST_END)
    position = offset + 2 * width
    if code in (0xE0, 0xF0):
        array, position = _array(data, position, end, count, depth)
        if position != end:
            raise DecodeError("compound size does not match its contents")
        return array, end
    if count > end - position:
        raise DecodeError("compound count larger than its bytes")
    items: list[Any] = []
    append = items.append
    for _ in range(count):
        item, position = _value(data, position, end, depth)
        append(item)
    if position != end:
        raise DecodeError("compound size does not match its contents")
    return (_to_map(items) if code in (0xC1, 0xD1) else items), end


def _to_map(items: list[Any]) -> dict[Any, Any]:
    if len(items) % 2:
        raise DecodeError("map with an odd number of elements")
    try:
        return dict(zip(items[::2], items[1::2], strict=True))
    except TypeError:
        raise DecodeError("map key is a list or a map") from None


def _array(data: bytes, position: int, end: int, count: int, depth: int) -> tuple[Array, int]:
    if position >= end:
        raise DecodeError(_PAST_END)
    descriptor = None
    code = data[position]
    position += 1
    if code == 0x00:
        descriptor, position = _value(data, position, end, depth)
        if position >= end:
            raise DecodeError(_PAST_END)
        code = data[position]
        position += 1
    if code == 0x00:
        raise DecodeError("array element constructor is described twice")
    if code in _EMPTY and count > MAX_EMPTY_ELEMENTS:
        raise DecodeError(f"array of more than {MAX_EMPTY_ELEMENTS} empty elements")
    if code not in _EMPTY and count > end - position:
        raise DecodeError("array count larger than its bytes")
    items = []
    for _ in range(count):
        item, position = _body(data, code, position, end, depth)
        items.append(item if descriptor is None else Described(descriptor, item))
    element = type(items[0]) if items else _element_type(code)
    return Array(element, items), position


def _element_type(code: int) -> type:
    if code in _FIXED_DECODE:
        wrapper: type = _FIXED_DECODE[code][2]
        return wrapper
    return {
        0x56: bool, 0x73: Char, 0x98: uuid.UUID, 0xA0: bytes, 0xB0: bytes, 0xA1: str,
        0xB1: str, 0xA3: Symbol, 0xB3: Symbol, 0xC0: list, 0xD0: list, 0xC1: dict, 0xD1: dict,
    }.get(code, object)  # fmt: skip
