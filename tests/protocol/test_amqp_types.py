"""The AMQP 1.0 type codec (devprov.protocol.amqp_types): encodings from part 1 of the standard.

Expected bytes are written out by hand from the standard's tables, and include the encodings
each SDK chose (rhea writes list32 performatives, the C SDK compact integers).
"""

from __future__ import annotations

import contextlib
import uuid
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from devprov.protocol.amqp_types import (
    MAX_DEPTH,
    Array,
    Byte,
    Char,
    Decimal,
    DecodeError,
    Described,
    EncodeError,
    Float,
    Int,
    Long,
    Short,
    Symbol,
    Timestamp,
    UByte,
    UInt,
    ULong,
    UShort,
    decode_all,
    decode_value,
    encode,
)

SETTINGS = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (None, "40"),
        (True, "41"),
        (False, "42"),
        (UByte(7), "5007"),
        (UShort(0x1234), "601234"),
        (UInt(0), "43"),
        (UInt(200), "52c8"),
        (UInt(70000), "7000011170"),
        (ULong(0), "44"),
        (ULong(0x10), "5310"),
        (ULong(2**40), "800000010000000000"),
        (Byte(-1), "51ff"),
        (Short(-2), "61fffe"),
        (Int(-3), "54fd"),
        (Int(100_000), "71000186a0"),
        (Long(-4), "55fc"),
        (2**40, "810000010000000000"),
        (Float(1.5), "723fc00000"),
        (1.5, "823ff8000000000000"),
        (Timestamp(1), "830000000000000001"),
        (Char("é"), "73000000e9"),
        (b"ab", "a0026162"),
        ("hé", "a10368c3a9"),
        (Symbol("TPM"), "a30354504d"),
        ([], "45"),
        ([UInt(1), None], "c00402520140"),
        ({Symbol("a"): "b"}, "c10702a30161a10162"),
        (Described(ULong(0x24), []), "00532445"),
        (Array(Symbol, [Symbol("TPM"), Symbol("PLAIN")]), "e01202b300000003" + "54504d"
         + "00000005504c41494e"),
    ],
)  # fmt: skip
def test_encodings_from_the_standard(value: Any, expected: str) -> None:
    assert encode(value).hex() == expected
    decoded, end = decode_value(bytes.fromhex(expected))
    assert end == len(expected) // 2
    assert decoded == value


@pytest.mark.parametrize(
    ("encoded", "value"),
    [
        # Wider encodings than ours, which other encoders choose.
        ("a1" "00", ""),
        ("b1" "00000002" "6869", "hi"),
        ("b3" "00000003" "54504d", Symbol("TPM")),
        ("b0" "00000001" "ff", b"\xff"),
        ("d0" "00000007" "00000002" "52" "01" "40", [UInt(1), None]),  # rhea's performatives
        ("d1" "0000000a" "00000002" "a3" "01" "61" "a1" "01" "62", {Symbol("a"): "b"}),
        ("70" "00000005", UInt(5)),
        ("80" "0000000000000010", ULong(16)),
        ("56" "01", True),
        ("56" "00", False),
        ("98" + "12" * 16, uuid.UUID(bytes=b"\x12" * 16)),
        ("74" "00000000", Decimal(bytes(4))),
        ("e0" "02" "02" "41", Array(bool, [True, True])),  # elements without bytes
        ("e0" "05" "02" "00" "53" "24" "45", Array(list, [Described(ULong(0x24), [])] * 2)),
        # A described value whose descriptor is a symbol.
        ("00" "a3" "0e" + b"amqp:open:list".hex() + "45", Described(Symbol("amqp:open:list"), [])),
    ],
)  # fmt: skip
def test_every_encoding_a_peer_may_choose_is_read(encoded: str, value: Any) -> None:
    decoded, end = decode_value(bytes.fromhex(encoded))
    assert decoded == value
    assert end == len(encoded) // 2


def test_integers_keep_their_amqp_type() -> None:
    for value in (UByte(1), UShort(1), UInt(1), ULong(1), Byte(1), Short(1), Int(1), Long(1)):
        decoded, _ = decode_value(encode(value))
        assert type(decoded) is type(value)


@pytest.mark.parametrize(
    ("encoded", "reason"),
    [
        ("", "past the end"),
        ("a1" "05" "6869", "past the end"),
        ("c0" "05" "03" "40", "past the end"),
        ("c0" "02" "05" "40", "count larger"),
        ("c0" "03" "01" "40" "40", "does not match"),
        ("c1" "02" "01" "40", "odd number"),
        ("c1" "03" "02" "45" "40", "key is a list"),
        ("a1" "02" "c3" "28", "not well-formed"),
        ("a3" "01" "e9", "not well-formed"),
        ("56" "02", "neither 0 nor 1"),
        ("73" "0000d800", "not a Unicode scalar"),
        ("ff", "unknown constructor"),
        ("f0" "00000005" "7fffffff" "41", "empty elements"),
        ("e0" "03" "05" "50" "01", "count larger"),
        ("e0" "02" "01" "00" "53", "past the end"),
    ],
)  # fmt: skip
def test_malformed_values_are_decode_errors(encoded: str, reason: str) -> None:
    with pytest.raises(DecodeError, match=reason):
        decode_value(bytes.fromhex(encoded))


def test_arrays_of_empty_elements_are_bounded() -> None:
    nulls, _ = decode_value(bytes.fromhex("e002ff40"))
    assert nulls == [None] * 255
    with pytest.raises(DecodeError, match="empty elements"):
        decode_value(bytes.fromhex("f0000000057fffffff41"))  # two billion trues


def test_nesting_is_bounded() -> None:
    nested: Any = []
    for _ in range(MAX_DEPTH):
        nested = [nested]
    assert decode_value(encode(nested))[0] == nested
    with pytest.raises(DecodeError, match="nested"):
        decode_value(encode([nested]))
    described = b"\x00\x53\x01" * (MAX_DEPTH + 1) + b"\x40"
    with pytest.raises(DecodeError, match="nested"):
        decode_value(described)


def test_values_without_an_encoding_are_our_own_errors() -> None:
    for value in (object(), Symbol("é"), UByte(256), Decimal(b"123"), Char("ab")):
        with pytest.raises(EncodeError):
            encode(value)
    with pytest.raises(EncodeError):
        encode(Array(Symbol, ["not a symbol"]))
    with pytest.raises(EncodeError):
        encode(Array(object, []))


def test_decode_all_reads_a_run_of_values() -> None:
    assert decode_all(bytes.fromhex("4041a10178")) == [None, True, "x"]


# Properties -----------------------------------------------------------------------------------

_scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(0, 2**8 - 1).map(UByte),
    st.integers(0, 2**16 - 1).map(UShort),
    st.integers(0, 2**32 - 1).map(UInt),
    st.integers(0, 2**64 - 1).map(ULong),
    st.integers(-(2**7), 2**7 - 1).map(Byte),
    st.integers(-(2**15), 2**15 - 1).map(Short),
    st.integers(-(2**31), 2**31 - 1).map(Int),
    st.integers(-(2**63), 2**63 - 1).map(Long),
    st.integers(-(2**63), 2**63 - 1).map(Timestamp),
    st.floats(allow_nan=False),
    st.floats(width=32, allow_nan=False).map(Float),
    st.uuids(),
    st.binary(max_size=300),
    st.text(max_size=300),
    st.text(st.characters(max_codepoint=127), max_size=40).map(Symbol),
    st.characters(exclude_categories=["Cs"]).map(Char),
    st.sampled_from([4, 8, 16]).flatmap(lambda n: st.binary(min_size=n, max_size=n)).map(Decimal),
)
_ascii = st.text(st.characters(max_codepoint=127), max_size=20)
_keys = st.one_of(st.text(max_size=20), st.integers(0, 2**32 - 1).map(UInt), _ascii.map(Symbol))
_arrays = st.one_of(
    st.lists(st.text(st.characters(max_codepoint=127), max_size=10).map(Symbol), max_size=5).map(
        lambda items: Array(Symbol, items)
    ),
    st.lists(st.integers(0, 2**32 - 1).map(UInt), max_size=5).map(lambda i: Array(UInt, i)),
    st.lists(st.booleans(), max_size=5).map(lambda items: Array(bool, items)),
    st.lists(st.binary(max_size=10), max_size=5).map(lambda items: Array(bytes, items)),
    st.lists(st.characters(exclude_categories=["Cs"]).map(Char), max_size=5).map(
        lambda items: Array(Char, items)
    ),
    st.lists(st.integers(-(2**63), 2**63 - 1).map(Long), max_size=5).map(
        lambda items: Array(Long, items)
    ),
)
values = st.recursive(
    st.one_of(_scalars, _arrays),
    lambda children: st.one_of(
        st.lists(children, max_size=6),
        st.dictionaries(_keys, children, max_size=4),
        st.tuples(st.integers(0, 2**64 - 1).map(ULong), children).map(lambda p: Described(*p)),
    ),
    max_leaves=30,
)


def same_types(left: Any, right: Any) -> bool:
    if isinstance(left, list) and isinstance(right, list):
        return len(left) == len(right) and all(map(same_types, left, right))
    if isinstance(left, dict) and isinstance(right, dict):
        return all(same_types(right[key], item) for key, item in left.items())
    if isinstance(left, Described):
        return isinstance(right, Described) and same_types(left.value, right.value)
    return type(left) is type(right)


@SETTINGS
@given(values)
def test_every_value_survives_a_round_trip_with_its_type(value: Any) -> None:
    encoded = encode(value)
    decoded, end = decode_value(encoded)
    assert end == len(encoded)
    assert decoded == value
    assert same_types(value, decoded)


@SETTINGS
@given(st.binary(max_size=200))
def test_any_bytes_decode_or_raise_decode_error(data: bytes) -> None:
    with contextlib.suppress(DecodeError):
        decode_all(data)
