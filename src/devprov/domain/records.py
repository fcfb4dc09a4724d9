"""The records devprov keeps: their kinds, a stored record, and the store port services use.

A record is an Azure JSON document under a lower-case key, with an etag. The store adapter
(store/) keeps each kind in a table of its own; services see only `RecordStore`, so they never
import the adapter, and tests can hand them anything that answers these calls.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from enum import Enum
from typing import Any, Protocol

Revisions = tuple[int, ...]
"""The revision of every revised kind: equal values mean none of those records changed."""


class Kind(Enum):
    """The kinds of record."""

    ENROLLMENT = "enrollments"
    GROUP = "enrollment_groups"
    REGISTRATION = "registrations"
    OPERATION = "operations"
    LINKED_HUB = "linked_hubs"
    HUB_DEVICE = "hub_devices"
    CERTIFICATE = "certificates"
    TPM_CHALLENGE = "tpm_challenges"
    EXCHANGE = "exchanges"
    CREDENTIAL_POLICY = "credential_policies"

    @property
    def revised(self) -> bool:
        """Whether writes to this kind bump its revision (caches of it depend on that)."""
        return self in _REVISED


_REVISED = {
    Kind.ENROLLMENT,
    Kind.GROUP,
    Kind.LINKED_HUB,
    Kind.CERTIFICATE,
    Kind.CREDENTIAL_POLICY,
}


@dataclass(frozen=True)
class StoredDocument:
    key: str
    etag: str
    document: dict[str, Any]


@dataclass(frozen=True)
class Put:
    """One upsert; `columns` fills the lookup columns a kind has beside its document."""

    kind: Kind
    key: str
    etag: str
    document: Mapping[str, Any]
    columns: Mapping[str, str | None] = field(default_factory=dict)


Change = Callable[[StoredDocument | None], Put | None]
"""Given a record as it is now (or None), the record to write instead (or None: no write)."""


class RecordStore(Protocol):
    """Reads and atomic writes of records, whatever database holds them."""

    async def get(self, kind: Kind, key: str) -> StoredDocument | None: ...

    async def page(
        self,
        kind: Kind,
        *,
        after: str | None = None,
        limit: int | None = None,
        where: Mapping[str, str] | None = None,
        prefix: str | None = None,
    ) -> list[StoredDocument]:
        """Records in key order after `after`, optionally filtered on lookup columns and on
        how their key starts."""
        ...

    async def count(
        self, kind: Kind, *, where: Mapping[str, str] | None = None, prefix: str | None = None
    ) -> int:
        """How many records `page` would list with these filters."""
        ...

    async def count_by(self, kind: Kind, column: str) -> dict[str | None, int]:
        """How many records hold each value of a lookup column."""
        ...

    async def keys(self, kind: Kind) -> list[str]: ...

    async def create(self, put: Put) -> None:
        """Insert a record that must not exist yet (409201 otherwise)."""
        ...

    async def replace(self, put: Put, if_match: str | None) -> bool:
        """Upsert; an If-Match other than `*` must match the stored etag (412). True if new."""
        ...

    async def delete(self, kind: Kind, key: str, if_match: str | None = None) -> bool:
        """Delete; False when there was none. A stale If-Match raises 412."""
        ...

    async def write(self, puts: Sequence[Put]) -> None:
        """Upsert several records: all of them, or none."""
        ...

    async def update(self, kind: Kind, key: str, change: Change) -> Put | None:
        """Read a record and write what `change` makes of it, in one transaction."""
        ...

    async def revisions(self) -> Revisions: ...
