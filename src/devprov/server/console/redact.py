"""Secrets out of what the console shows: keys, tokens, passwords and URL query values."""

from __future__ import annotations

import re
from typing import Any
from urllib.parse import urlsplit, urlunsplit

HIDDEN = "***"
_SECRET_NAMES = re.compile(
    r"(key|secret|password|token|signature|sig|connectionstring|authorization)$", re.IGNORECASE
)


def redact_url(url: str) -> str:
    """The URL with its query values and any user info hidden (a webhook's `code`, say)."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return HIDDEN
    host = parts.hostname or ""
    if parts.port:
        host = f"{host}:{parts.port}"
    query = "&".join(
        f"{pair.split('=', 1)[0]}={HIDDEN}" if "=" in pair else pair
        for pair in parts.query.split("&")
        if pair
    )
    return urlunsplit((parts.scheme, host, parts.path, query, ""))


def redact(value: Any) -> Any:
    """A copy of a JSON value with every secret-looking field hidden and URLs cleaned."""
    if isinstance(value, dict):
        return {key: _field(str(key), item) for key, item in value.items()}
    if isinstance(value, list):
        return [redact(item) for item in value]
    return value


def _field(name: str, value: Any) -> Any:
    if value is None:
        return None
    if _SECRET_NAMES.search(name) and not isinstance(value, dict | list):
        return HIDDEN
    if name.lower().endswith("url") and isinstance(value, str):
        return redact_url(value)
    return redact(value)
