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
from typing import Any

MAX_DEPTH = 64
MAX_NUMBER_CHARACTERS = 64


class JsonRefused(ValueError):
    """JSON text refused: malformed, or past one of the limits."""


def parse_json(
    raw: bytes | str,
    *,
    max_depth: int = MAX_DEPTH,
    max_number_characters: int = MAX_NUMBER_CHARACTERS,
) -> Any:
    """The value `raw` holds, or `JsonRefused` saying why not."""

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

    try:
        value = json.loads(
            raw,
            parse_int=lambda text: number(text, int),
            parse_float=lambda text: number(text, float),
            parse_constant=constant,
        )
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
    _check_value(value, max_depth)
    return value


def _check_value(value: Any, max_depth: int) -> None:
    """Walk the parsed value once, without recursion: depth, and U+0000 in strings and keys."""
    pending: list[tuple[Any, int]] = [(value, 0)]
    while pending:
        item, depth = pending.pop()
        if isinstance(item, str):
            if "\x00" in item:
                raise JsonRefused("a JSON string contains U+0000, which is not accepted")
        elif isinstance(item, dict | list):
            if depth >= max_depth:
                raise JsonRefused(
                    f"JSON nested more than {max_depth} levels deep; at most {max_depth} are"
                    " accepted"
                )
            if isinstance(item, dict):
                pending.extend((key, depth) for key in item)
                pending.extend((member, depth + 1) for member in item.values())
            else:
                pending.extend((member, depth + 1) for member in item)
