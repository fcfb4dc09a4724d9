"""A connection string as people may see it: its host and user or key name, never a secret."""

from __future__ import annotations

from urllib.parse import urlsplit

HIDDEN = "***"
_SECRET_FIELDS = ("key", "secret", "password", "token", "signature")


def masked(text: str) -> str:
    """`HostName=h;SharedAccessKeyName=n;SharedAccessKey=***`, `mqtt://admin:***@h:1883`,
    `Url=https://h/***;Secret=***`: what an operator needs to recognise it, nothing to use."""
    if "://" in text and "=" not in text.split("://", 1)[0]:
        return _masked_url(text)
    parts = []
    for part in text.split(";"):
        name, sep, value = part.partition("=")
        if not sep:
            continue
        if name.strip().lower() == "url":
            value = _masked_url(value.strip())
        elif any(word in name.lower() for word in _SECRET_FIELDS) and not name.endswith("Name"):
            value = HIDDEN
        parts.append(f"{name.strip()}={value}")
    return ";".join(parts)


def _masked_url(url: str) -> str:
    """Scheme, user and host; the password, path and query (which may carry a code) hidden."""
    try:
        parts = urlsplit(url)
        port = f":{parts.port}" if parts.port else ""
    except ValueError:
        return HIDDEN
    user = f"{parts.username}:{HIDDEN}@" if parts.username else ""
    rest = f"/{HIDDEN}" if parts.path.strip("/") or parts.query else ""
    return f"{parts.scheme}://{user}{parts.hostname or ''}{port}{rest}"
