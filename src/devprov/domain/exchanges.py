"""A recorded custom allocation exchange (webhook or in-process allocator), secrets removed."""

from __future__ import annotations

import secrets
import time
from dataclasses import asdict, dataclass, field
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from devprov.domain.ids import id_key

REDACTED = "***"
# Query parameters that carry keys: Azure Functions' `code`, and what people name theirs.
_SECRET_PARAMETERS = {"code", "key", "sig", "token", "secret", "api-key", "apikey", "password"}


def redact_url(url: str) -> str:
    """The URL without what would let someone call the webhook: user:password and key-like
    query values become ***."""
    parts = urlsplit(url)
    netloc = parts.netloc
    if "@" in netloc:
        netloc = f"{REDACTED}@{netloc.rsplit('@', 1)[1]}"
    query = [
        (name, REDACTED if name.lower() in _SECRET_PARAMETERS else value)
        for name, value in parse_qsl(parts.query, keep_blank_values=True)
    ]
    return urlunsplit((parts.scheme, netloc, parts.path, urlencode(query, safe="*"), ""))


def new_exchange_id(at: float) -> str:
    """Sortable by time (the store lists exchanges in key order), unique by its random tail."""
    return f"{int(at * 1000):013d}-{secrets.token_hex(4)}"


def enrollment_key(kind: str, enrollment_id: str) -> str:
    """`enrollment:ID` or `group:ID` (lower case), what exchanges are bounded and listed by."""
    prefix = "enrollment" if kind == "individualEnrollment" else "group"
    return f"{prefix}:{id_key(enrollment_id)}"


@dataclass(frozen=True)
class Exchange:
    """One allocation request and what came of it.

    `target` is the webhook URL (secrets redacted) or `allocator://NAME`; `answer` the parsed
    JSON answer (or `{"text": ...}` when it was not JSON); `status` the HTTP status (None for an
    allocator, or when no answer came); `error` the errorCode and message the device got."""

    registration_id: str
    enrollment_kind: str
    enrollment_id: str
    target: str
    request: dict[str, Any]
    answer: Any = None
    status: int | None = None
    error: dict[str, Any] | None = None
    duration_ms: float = 0.0
    attempts: list[dict[str, Any]] = field(default_factory=list)
    at: float = field(default_factory=time.time)
    id: str = ""

    def __post_init__(self) -> None:
        if not self.id:
            object.__setattr__(self, "id", new_exchange_id(self.at))

    @property
    def failed(self) -> bool:
        return self.error is not None

    @property
    def enrollment(self) -> str:
        return enrollment_key(self.enrollment_kind, self.enrollment_id)

    def to_document(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_document(cls, document: dict[str, Any]) -> Exchange:
        return cls(**document)
