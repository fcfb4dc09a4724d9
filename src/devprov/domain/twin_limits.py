"""What IoT Hub accepts in a twin: key and value rules, nesting, and sizes as IoT Hub counts them.

Every patch and replacement is checked here before anything is merged, so a refused write
leaves the twin as it was. Source: DOC-TWIN "Tags and properties format" and "Device twin size"
(iothub-device-mqtt.md §3.3).
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from typing import Any

from devprov.domain.errors import bad_request

# DOC-TWIN "Tags and properties format" and "Device twin size" (iothub-device-mqtt.md §3.3).
MAX_KEY_BYTES = 1024
MAX_STRING_BYTES = 4 * 1024
MAX_DEPTH = 10
MIN_INTEGER = -4503599627370496
MAX_INTEGER = 4503599627370495
MAX_TAGS_BYTES = 8 * 1024
MAX_DESIRED_BYTES = 32 * 1024
MAX_REPORTED_BYTES = 32 * 1024

METADATA = "$metadata"
VERSION = "$version"
READ_ONLY = (METADATA, VERSION)
# "UNICODE control characters (segments C0 and C1)": U+0000-U+001F, U+0080-U+009F, and DEL
# (U+007F), which Unicode also classes as a control character.
_CONTROL = re.compile("[\x00-\x1f\x7f-\x9f]")


def without_read_only(section: Mapping[str, Any]) -> dict[str, Any]:
    """A section without its read-only `$metadata` and `$version`."""
    return {key: value for key, value in section.items() if key not in READ_ONLY}


def checked_object(value: Any, path: str, *, read_only_allowed: bool) -> dict[str, Any]:
    """`value` if it is a section patch IoT Hub accepts, else a 400004 naming the bad spot.

    With `read_only_allowed`, top-level `$metadata`/`$version` are dropped: service clients send
    back the documents GET gave them, read-only elements included.
    """
    if not isinstance(value, Mapping):
        raise bad_request(f"{path}: must be a JSON object")
    content = dict(value)
    if read_only_allowed:
        content = without_read_only(content)
    _check_object(content, path, 0)
    return content


def _check_object(value: Mapping[Any, Any], path: str, depth: int) -> None:
    for key, item in value.items():
        _check_key(key, path)
        _check_value(item, f"{path}.{_shown(key)}", depth)


def _check_key(key: Any, path: str) -> None:
    if not isinstance(key, str):
        raise bad_request(f"{path}: keys must be strings")
    if not key:
        raise bad_request(f"{path}: keys may not be empty")
    where = f"{path}.{_shown(key)}"
    if not _is_unicode(key):
        raise bad_request(f"{where}: keys must be valid Unicode (no lone surrogates)")
    if len(key.encode()) > MAX_KEY_BYTES:
        raise bad_request(f"{where}: keys may not be longer than {MAX_KEY_BYTES} bytes in UTF-8")
    if _CONTROL.search(key):
        raise bad_request(f"{where}: keys may not contain control characters")
    for character, name in ((".", "'.'"), ("$", "'$'"), (" ", "spaces")):
        if character in key:
            raise bad_request(f"{where}: keys may not contain {name}")


def _check_value(value: Any, path: str, depth: int) -> None:
    if value is None or isinstance(value, bool):
        return
    if isinstance(value, int):
        if not MIN_INTEGER <= value <= MAX_INTEGER:
            raise bad_request(f"{path}: integers must be between {MIN_INTEGER} and {MAX_INTEGER}")
    elif isinstance(value, float):
        if not math.isfinite(value):
            raise bad_request(f"{path}: numbers must be finite (no NaN or Infinity)")
    elif isinstance(value, str):
        if not _is_unicode(value):
            raise bad_request(f"{path}: strings must be valid Unicode (no lone surrogates)")
        if len(value.encode()) > MAX_STRING_BYTES:
            raise bad_request(
                f"{path}: strings may not be longer than {MAX_STRING_BYTES} bytes in UTF-8"
            )
    elif isinstance(value, dict | list):
        # Depth counts containers below the section: DOC-TWIN's valid example nests ten
        # objects under `tags`. Arrays count too (the doc is silent), which also bounds the
        # recursion here.
        if depth + 1 > MAX_DEPTH:
            raise bad_request(f"{path}: objects and arrays may nest at most {MAX_DEPTH} deep")
        if isinstance(value, dict):
            _check_object(value, path, depth + 1)
        else:
            for index, item in enumerate(value):
                _check_value(item, f"{path}[{index}]", depth + 1)
    else:
        raise bad_request(
            f"{path}: values must be a boolean, number, string, null, object or array"
        )


def _is_unicode(text: str) -> bool:
    """False for text with lone surrogates (JSON allows "\\ud800"): it has no UTF-8 form, so
    the twin could not be sent to the device."""
    try:
        text.encode()
    except UnicodeEncodeError:
        return False
    return True


def check_size(content: Mapping[str, Any], path: str, limit: int) -> None:
    size = twin_size(content)
    if size > limit:
        raise bad_request(
            f"{path}: may not be larger than {limit} bytes as IoT Hub counts them;"
            f" this write makes it {size}"
        )


def twin_size(content: Mapping[str, Any]) -> int:
    """The size IoT Hub charges a section against its limit (DOC-TWIN "Device twin size").

    Keys and strings count their UTF-8 bytes without control characters, numbers 8 bytes,
    booleans 4, objects and arrays the sum of what they hold; `$version`/`$metadata` are not
    counted. Using IoT Hub's own arithmetic (not the JSON text length) means a twin IoT Hub
    holds, for example one migrated from a real hub, also fits here. The doc is silent on null,
    which only arrays can hold once merged; it counts 4, like a boolean.
    """
    return sum(
        _text_size(key) + _value_size(value) for key, value in without_read_only(content).items()
    )


def _value_size(value: Any) -> int:
    if value is None or isinstance(value, bool):
        return 4
    if isinstance(value, int | float):
        return 8
    if isinstance(value, str):
        return _text_size(value)
    if isinstance(value, list):
        return sum(_value_size(item) for item in value)
    return sum(_text_size(key) + _value_size(item) for key, item in value.items())


def _text_size(text: str) -> int:
    return len(_CONTROL.sub("", text).encode())


def _shown(text: str, limit: int = 64) -> str:
    """`text` fit for an error message: control characters escaped, long text cut short."""
    shown = "".join(c if c.isprintable() or c == " " else f"\\u{ord(c):04x}" for c in text)
    return shown if len(shown) <= limit else shown[: limit - 1] + "…"
