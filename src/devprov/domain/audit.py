"""The audit trail of management writes: who changed what, when, from where, and the outcome.

An entry never holds a key or a body: the method, the path (ids only), the resource's id, the
HTTP status (or the CLI's equivalent), the principal (a policy's key name, `cli:USER`) and the
peer address.
"""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from typing import Any, Protocol

from devprov.domain.errors import bad_request

UNKNOWN = "-"


@dataclass(frozen=True)
class AuditEntry:
    at: float
    who: str
    method: str
    path: str
    resource: str | None
    status: int
    peer: str | None
    id: int | None = None

    def to_wire(self) -> dict[str, Any]:
        wire = asdict(self)
        wire["at"] = datetime.fromtimestamp(self.at, UTC).isoformat().replace("+00:00", "Z")
        return wire


class AuditLog(Protocol):
    """Where audit entries are kept (store/audit.py), and read back newest first."""

    async def record(self, entry: AuditEntry) -> None: ...

    async def entries(self, since: float | None = None, limit: int = 100) -> list[AuditEntry]: ...


AdminAudit = Callable[[str, str, str | None, int], Awaitable[None]]
"""Told each management write made through the facade: method, path, resource id, status."""


def parse_since(value: str | None) -> float | None:
    """`since` as epoch seconds or an ISO 8601 time (UTC unless it says otherwise)."""
    if not value:
        return None
    wrong = bad_request(
        "since must be epoch seconds or an ISO 8601 time (e.g. 2026-12-01T18:00:00Z)."
    )
    if re.fullmatch(r"[0-9]{1,12}(\.[0-9]{0,9})?", value):
        return float(value)
    try:
        moment = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        raise wrong from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    try:
        return moment.timestamp()
    except (OverflowError, ValueError, OSError):
        raise wrong from None
