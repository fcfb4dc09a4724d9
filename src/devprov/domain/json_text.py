"""JSON from outside, parsed within limits: nesting depth, number length, no NaN, no NUL.

Every JSON text devprov did not write itself (a device's register body, a service API body, a
webhook's or a hub's answer, a twin patch) is parsed by `parse_json`, so one rule holds everywhere:

- at most `MAX_DEPTH` nested arrays and objects (Python's parser would otherwise recurse until
  RecursionError, and so would everything that walks the value after it);
- numbers of at most `MAX_NUMBER_CHARACTERS` characters (Python refuses integers of more than
  4,300 digits with a ValueError of its own; a long float silently becomes infinity);
- no `NaN`, `Infinity` or `-Infinity` (not JSON: they could be neither forwarded nor stored);
- no U+0000 in a string or key (PostgreSQL cannot store it in text).

Any of these, or text that is not UTF-8 JSON at all, raises `JsonRefused` (a ValueError) whose
message says what was wrong; each caller turns it into its own error (400001, 400212, ...).
"""

from __future__ import annotations

import json
import math
from itertools import chain, compress, repeat
from operator import is_, not_
from typing import Any

MAX_DEPTH = 64
MAX_NUMBER_CHARACTERS = 64

_CONTAINERS = frozenset({dict, list})
# Two views of the text, made in C: number characters as '0' (a run longer than the limit may
# be a long number), and digits, exponent marks and signs apart (a three-digit exponent is the
# only way a short literal overflows a float).
_NUMBER_CHARACTERS = b"-+.eE0123456789"
_RUNS = bytes(48 if byte in _NUMBER_CHARACTERS else 32 for byte in range(256))
_EXPONENTS = bytes(
    48
    if chr(byte).isdigit() and byte < 128
    else 101
    if byte in b"eE"
    else 115
    if byte in b"+-"
    else 32
    for byte in range(256)
)


class JsonRefused(ValueError):
    """JSON text refused: malformed, or past one of the limits."""


def _suspect_numbers(data: bytes, max_characters: int) -> bool:
    """Whether `data` may hold a number past the limits (perhaps only inside a string): if not,
    every number in it is within them and none needs checking one by one."""
    if b"0" * (max_characters + 1) in data.translate(_RUNS):
        return True
    exponents = data.translate(_EXPONENTS)
    return b"e000" in exponents or b"es000" in exponents


def parse_json(
    raw: bytes | str,
    *,
    max_depth: int = MAX_DEPTH,
    max_number_characters: int = MAX_NUMBER_CHARACTERS,
) -> Any:
    """The value `raw` holds, or `JsonRefused` saying why not.

    The common case costs json.loads and a few scans of the text in C; only text that may be
    past a limit is looked at number by number or value by value."""
    data = raw.encode("utf-8", "surrogatepass") if isinstance(raw, str) else raw

    def number(text: str, convert: type[int] | type[float]) -> int | float:
        if len(text) > max_number_characters:
            raise JsonRefused(
                f"a JSON number of {len(text)} characters; at most {max_number_characters}"
                " are accepted"
            )
        value = convert(text)
        if isinstance(value, float) and not math.isfinite(value):
            raise JsonRefused(f"the JSON number {text} is out of range")
        return value

    def constant(name: str) -> Any:
        raise JsonRefused(f"{name} is not a JSON value")

    hooks: dict[str, Any] = {"parse_constant": constant}
    if _suspect_numbers(data, max_number_characters):
        hooks["parse_int"] = lambda text: number(text, int)
        hooks["parse_float"] = lambda text: number(text, float)
    try:
        value = json.loads(raw, **hooks)
    except JsonRefused:
        raise
    except RecursionError:
        raise JsonRefused(
            f"JSON nested too deeply; at most {max_depth} levels are accepted"
        ) from None
    except UnicodeDecodeError as exc:
        raise JsonRefused(f"the JSON text is not UTF-8: {exc.reason}") from None
    except json.JSONDecodeError as exc:
        raise JsonRefused(str(exc)) from None
    except (ValueError, TypeError) as exc:  # not expected past the checks above
        raise JsonRefused(f"the JSON text cannot be read: {exc}") from None
    if data.count(b"[") + data.count(b"{") > max_depth:
        _check_depth(value, max_depth)
    if b"\\u0000" in data and _has_nul(value):
        raise JsonRefused("a JSON string contains U+0000, which is not accepted")
    return value


def _check_depth(value: Any, max_depth: int) -> None:
    """Refuse `value` if arrays and objects nest in it deeper than `max_depth`: level by level,
    only containers visited, every loop over members run in C (itertools, operator)."""
    level = [value] if type(value) in _CONTAINERS else []
    depth = 0
    while level:
        depth += 1
        if depth > max_depth:
            raise JsonRefused(
                f"JSON nested more than {max_depth} levels deep; at most {max_depth} are accepted"
            )
        is_dict = list(map(is_, map(type, level), repeat(dict)))
        members = list(
            chain(
                chain.from_iterable(map(dict.values, compress(level, is_dict))),
                chain.from_iterable(compress(level, map(not_, is_dict))),
            )
        )
        level = list(compress(members, map(_CONTAINERS.__contains__, map(type, members))))


def _has_nul(value: Any) -> bool:
    """Whether a string or key in `value` holds U+0000 (its depth is already bounded)."""
    if isinstance(value, str):
        return "\x00" in value
    if isinstance(value, dict):
        return any("\x00" in key or _has_nul(item) for key, item in value.items())
    if isinstance(value, list):
        return any(_has_nul(item) for item in value)
    return False
