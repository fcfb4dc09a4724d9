"""The registration service's ports (registration/ports.py) over the store."""

from __future__ import annotations

from typing import Any

from devprov.domain.clock import new_etag
from devprov.domain.ids import id_key
from devprov.domain.records import Kind, Put, Revisions, StoredDocument
from devprov.store.database import Store

Document = dict[str, Any]


class StoredRegistrations:
    """Registration records, keyed by lower-case registration id, looked up by group."""

    def __init__(self, store: Store) -> None:
        self.store = store

    async def read_with_revisions(self, registration_id: str) -> tuple[Revisions, Document | None]:
        revisions, stored = await self.store.revisions_and(
            Kind.REGISTRATION, id_key(registration_id)
        )
        return revisions, stored.document if stored else None

    async def read(self, registration_id: str) -> Document | None:
        stored = await self.store.get(Kind.REGISTRATION, id_key(registration_id))
        return stored.document if stored else None

    async def answered_by(self, registration_id: str, operation_id: str) -> Document | None:
        rows = await self.store.page(
            Kind.REGISTRATION,
            where={"key": id_key(registration_id), "operation_id": operation_id},
        )
        return rows[0].document if rows else None

    async def save(self, record: Document, group_id: str | None, operation_id: str) -> None:
        columns = {
            "group_key": id_key(group_id) if group_id else None,
            "operation_id": operation_id,
        }
        key = id_key(record["registrationId"])
        await self.store.write(
            [Put(Kind.REGISTRATION, key, record.get("etag") or "", record, columns)]
        )


class StoredOperations:
    """Operation statuses, written only for registrations that were not answered at once."""

    def __init__(self, store: Store) -> None:
        self.store = store

    async def read(self, operation_id: str) -> Document | None:
        stored = await self.store.get(Kind.OPERATION, operation_id)
        return stored.document if stored else None

    async def save(self, operation_id: str, registration_id: str, status: Document) -> None:
        columns = {"registration_key": id_key(registration_id)}
        await self.store.write([Put(Kind.OPERATION, operation_id, new_etag(), status, columns)])


class StoredChallenges:
    """TPM challenges, one per registration id; using one is a compare-and-set on its etag."""

    def __init__(self, store: Store) -> None:
        self.store = store

    async def issue(self, registration_id: str, challenge: Document) -> None:
        await self.store.write(
            [Put(Kind.TPM_CHALLENGE, id_key(registration_id), new_etag(), challenge)]
        )

    async def read(self, registration_id: str) -> Document | None:
        stored = await self.store.get(Kind.TPM_CHALLENGE, id_key(registration_id))
        return stored.document if stored else None

    async def use(self, registration_id: str, challenge: Document) -> bool:
        key = id_key(registration_id)

        def mark_used(current: StoredDocument | None) -> Put | None:
            if current is None or current.document != challenge or challenge.get("used"):
                return None
            return Put(Kind.TPM_CHALLENGE, key, new_etag(), {**challenge, "used": True})

        return await self.store.update(Kind.TPM_CHALLENGE, key, mark_used) is not None
