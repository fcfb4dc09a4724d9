"""The one JSON parser for outside input: the limits, and what each refusal says."""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from devprov.domain.json_text import MAX_DEPTH, MAX_NUMBER_CHARACTERS, JsonRefused, parse_json


@pytest.mark.parametrize(
    ("raw", "words"),
    [
        (b"[" * 40_000 + b"]" * 40_000, "nested"),
        (b'{"a":' * 12_000 + b"1" + b"}" * 12_000, "nested"),
        (b"[" * (MAX_DEPTH + 1) + b"]" * (MAX_DEPTH + 1), "nested"),
        (b"7" * 5_000, "5000 characters"),
        (b"-" + b"7" * MAX_NUMBER_CHARACTERS, "characters"),
        (b"0." + b"1" * 5_000, "characters"),
        (b"1e999", "out of range"),
        (b"[NaN]", "NaN"),
        (b'{"a": Infinity}', "Infinity"),
        (b"-Infinity", "Infinity"),
        (b'["a\\u0000"]', "U+0000"),
        (b'{"k\\u0000": 1}', "U+0000"),
        (b"\xff\xfe{", "UTF-8"),
        (b"{", "Expecting"),
        (b"", "Expecting"),
    ],
)
def test_refusals_say_what_was_wrong(raw: bytes, words: str) -> None:
    with pytest.raises(JsonRefused) as refused:
        parse_json(raw)
    assert words in str(refused.value)


def test_the_limits_themselves_are_accepted() -> None:
    deepest = "[" * MAX_DEPTH + "]" * MAX_DEPTH
    assert parse_json(deepest) == json.loads(deepest)
    longest = "9" * MAX_NUMBER_CHARACTERS
    assert parse_json(longest) == int(longest)
    assert parse_json('{"s": "a\\\\u0000 is six characters"}') == {
        "s": "a\\u0000 is six characters"
    }
    assert parse_json('["\\u0001\\n", 1.5e300, -0]') == ["\x01\n", 1.5e300, 0]


json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-(10**30), max_value=10**30)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(st.characters(blacklist_characters="\x00")),
    lambda children: (
        st.lists(children, max_size=4)
        | st.dictionaries(st.text(st.characters(blacklist_characters="\x00"), max_size=5), children)
    ),
    max_leaves=20,
)


@settings(max_examples=300)
@given(json_values)
def test_every_json_value_within_the_limits_reads_as_json_loads_reads_it(value: Any) -> None:
    text = json.dumps(value)
    assert parse_json(text) == json.loads(text)
    assert parse_json(text.encode()) == json.loads(text)
