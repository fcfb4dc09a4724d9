"""The registration service's ports (registration/ports.py) over the store."""

from __future__ import annotations

import json
import time
from collections.abc import Sequence
from typing import Any

import psycopg
import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.exc import IntegrityError, OperationalError

from devprov.domain.claims import Claim
from devprov.domain.clock import new_etag
from devprov.domain.ids import id_key
from devprov.domain.records import Kind, Put, StoredDocument
from devprov.store.batching import Batcher
from devprov.store.connections import DbConnection, Statement
from devprov.store.database import Store
from devprov.store.statements import EXPIRE_CLAIM, RELEASE_CLAIM
from devprov.store.tables import operations, registration_claims, registrations

Document = dict[str, Any]
Row = dict[str, Any]

# Built once, so that each registration's claim costs no statement building or compiling.
_claims = registration_claims
_CLAIMS_OF = sa.select(
    _claims.c.key, _claims.c.device_key, _claims.c.owner, _claims.c.expires_at
).where(
    sa.or_(_claims.c.key == sa.bindparam("key"), _claims.c.device_key == sa.bindparam("device"))
)
_DELETE_CLAIMS = sa.delete(_claims).where(_claims.c.key.in_(sa.bindparam("keys", expanding=True)))
_INSERT_CLAIM = sa.insert(_claims)
_INSERT_FREE_CLAIM = {  # inserts nothing when either id is claimed (expired or not)
    "sqlite": sqlite.insert(_claims).on_conflict_do_nothing().returning(_claims.c.key),
    "postgresql": postgresql.insert(_claims).on_conflict_do_nothing().returning(_claims.c.key),
}
_HOLDERS = sa.select(registrations.c.key).where(
    registrations.c.device_key == sa.bindparam("device"),
    registrations.c.hub_key == sa.bindparam("hub"),
)
# PostgreSQL: the first try of every claim asked for meanwhile, in one statement, sorted by
# key (two nodes inserting the same keys in opposite orders could deadlock), and what each
# guards, read after it.
_TAKE_FREE_CLAIMS = sa.text(
    "INSERT INTO registration_claims (key, device_key, owner, expires_at)"
    " SELECT key, device_key, owner, expires_at"
    " FROM json_populate_recordset(NULL::registration_claims, CAST(:claims AS json))"
    " ORDER BY key ON CONFLICT DO NOTHING RETURNING key, owner"
)
_UNDER_CLAIMS = sa.text(
    "SELECT key, etag, document, hub_key, device_key FROM registrations"
    " WHERE key = ANY(:keys) OR device_key = ANY(:devices)"
)
# What a claim is taken with: the registration's record, and every record naming its device.
_UNDER_CLAIM = sa.select(
    registrations.c.key,
    registrations.c.etag,
    registrations.c.document,
    registrations.c.hub_key,
    registrations.c.device_key,
).where(
    sa.or_(
        registrations.c.key == sa.bindparam("key"),
        registrations.c.device_key == sa.bindparam("device"),
    )
)


class StoredRegistrations:
    """Registration records, keyed by lower-case registration id, looked up by group."""

    def __init__(self, store: Store) -> None:
        self.store = store

    async def read(self, registration_id: str) -> Document | None:
        stored = await self.store.get(Kind.REGISTRATION, id_key(registration_id))
        return stored.document if stored else None

    async def answered_by(self, registration_id: str, operation_id: str) -> Document | None:
        rows = await self.store.page(
            Kind.REGISTRATION,
            where={"key": id_key(registration_id), "operation_id": operation_id},
        )
        return rows[0].document if rows else None

    async def save(
        self,
        record: Document,
        group_id: str | None,
        operation_id: str,
        claim: Claim | None = None,
        settled: bool = True,
        keep_claim: bool = False,
    ) -> None:
        hub, device = record.get("assignedHub") or "", record.get("deviceId") or ""
        placed = bool(hub and device)
        columns = {
            "group_key": id_key(group_id) if group_id else None,
            "operation_id": operation_id,
            "hub_key": hub.lower() if placed else None,
            "device_key": device.lower() if placed else None,
        }
        key = id_key(record["registrationId"])
        put = Put(Kind.REGISTRATION, key, record.get("etag") or "", record, columns)
        if claim is None or (keep_claim and settled):
            await self.store.write([put])
        elif settled:  # the usual case: merged with other registrations' writes
            await self.store.write([put], releasing=[(key, claim.owner)])
        else:

            async def save_and_expire(connection: DbConnection) -> None:
                await self.store._upsert(connection, put)
                await _release(connection, claim, settled)

            await self.store.run(save_and_expire)

    async def holders(self, hub: str, device_id: str) -> list[str]:
        parameters = {"hub": hub.lower(), "device": device_id.lower()}
        async with self.store.database.connect() as connection:
            return list((await connection.execute(_HOLDERS, parameters)).scalars())


class StoredOperations:
    """Operation statuses, written only for registrations that were not answered at once."""

    def __init__(self, store: Store) -> None:
        self.store = store

    async def read(self, operation_id: str) -> Document | None:
        stored = await self.store.get(Kind.OPERATION, operation_id)
        return stored.document if stored else None

    async def save(self, operation_id: str, registration_id: str, status: Document) -> None:
        columns = {"registration_key": id_key(registration_id), "status": status.get("status")}
        await self.store.write([Put(Kind.OPERATION, operation_id, new_etag(), status, columns)])

    async def orphaned(self, before: float, limit: int = 100) -> Sequence[tuple[str, str, str]]:
        query = (
            sa.select(operations.c.key, operations.c.registration_key, operations.c.etag)
            .where(operations.c.status == "assigning", operations.c.updated_at < before)
            .limit(limit)
        )
        async with self.store.database.connect() as connection:
            rows = (await connection.execute(query)).all()
        return [(row.key, row.registration_key, row.etag) for row in rows]

    async def settle(self, operation_id: str, etag: str, status: Document) -> bool:
        async def replace(connection: DbConnection) -> bool:
            result = await connection.execute(
                sa.update(operations)
                .where(operations.c.key == operation_id, operations.c.etag == etag)
                .values(
                    etag=new_etag(),
                    document=status,
                    status=status.get("status"),
                    updated_at=time.time(),
                )
            )
            return bool(result.rowcount)

        return await self.store.run(replace)


class StoredClaims:
    """Registration claims: a row per running registration, unique by registration id and by
    device id, so any process or node on the same database sees it."""

    def __init__(self, store: Store) -> None:
        self.store = store
        # A claim is a write transaction of its own: on PostgreSQL (some 110 us of its CPU
        # each) those asked for together are tried together, as a batch of records is written.
        self._first_tries: Batcher[Row, tuple[bool, list[Any]]] | None = (
            Batcher(self._try_many) if store.database.dialect_name == "postgresql" else None
        )

    async def take(
        self, registration_id: str, device_id: str, owner: str, seconds: float
    ) -> Claim | None:
        key, device = id_key(registration_id), id_key(device_id)
        claim: Row = {
            "key": key,
            "device_key": device,
            "owner": owner,
            "expires_at": time.time() + seconds,
        }
        under_claim = (_UNDER_CLAIM, {"key": key, "device": device})
        # The usual case, neither id claimed: the claim and the read under it, together (on
        # PostgreSQL one round trip; the read sees every registration that let the ids go).
        try:
            inserted, rows = await self._try(claim, under_claim)
            stale: tuple[str, ...] | None = ()
            if not inserted:
                stale = await self.store.run(lambda connection: _take_over(connection, claim))
                if stale is not None:
                    (rows,) = await self.store.together([under_claim])
        except (IntegrityError, OperationalError, psycopg.IntegrityError, psycopg.OperationalError):
            # Another node inserted the same claim meanwhile, or PostgreSQL chose this
            # transaction to break a deadlock between nodes: not taken, ask again.
            return None
        if stale is None:
            return None
        record = next((row for row in rows if row.key == key), None)
        return Claim(
            registration_id,
            device_id,
            owner,
            stale,
            self.store.opened(Kind.REGISTRATION, record).document if record else None,
            tuple((row.key, row.hub_key) for row in rows if row.device_key == device),
        )

    async def _try(self, claim: Row, under_claim: Statement) -> tuple[bool, Sequence[Any]]:
        """Whether `claim` was inserted (neither id was claimed), and the rows under it."""
        if self._first_tries is not None:
            return await self._first_tries(claim)
        inserted, rows = await self.store.together(
            [(_INSERT_FREE_CLAIM[self.store.database.dialect_name], claim), under_claim]
        )
        return bool(inserted), rows

    async def _try_many(self, claims: list[Row]) -> list[tuple[bool, list[Any]]]:
        keys, devices = [c["key"] for c in claims], [c["device_key"] for c in claims]
        inserted, rows = await self.store.together(
            [
                (_TAKE_FREE_CLAIMS, {"claims": json.dumps(claims)}),
                (_UNDER_CLAIMS, {"keys": keys, "devices": devices}),
            ]
        )
        won = {(row.key, row.owner) for row in inserted}
        # Each claim's rows, looked up (a batch may hold hundreds of claims and of rows).
        by_key: dict[str, list[Any]] = {}
        by_device: dict[str, list[Any]] = {}
        for row in rows:
            by_key.setdefault(row.key, []).append(row)
            by_device.setdefault(row.device_key, []).append(row)
        return [
            (
                (claim["key"], claim["owner"]) in won,
                by_key.get(claim["key"], [])
                + [r for r in by_device.get(claim["device_key"], []) if r.key != claim["key"]],
            )
            for claim in claims
        ]

    async def release(self, claim: Claim, settled: bool = True) -> None:
        async def release(connection: DbConnection) -> None:
            await _release(connection, claim, settled)

        await self.store.run(release)

    async def expired(self, limit: int = 100) -> list[tuple[str, str]]:
        claims = registration_claims
        query = (
            sa.select(claims.c.key, claims.c.device_key)
            .where(claims.c.expires_at < time.time())
            .order_by(claims.c.expires_at)
            .limit(limit)
        )
        async with self.store.database.connect() as connection:
            return [(row.key, row.device_key) for row in await connection.execute(query)]


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


async def _take_over(connection: DbConnection, claim: dict[str, Any]) -> tuple[str, ...] | None:
    """Take `claim` from expired claims of either id: the device ids they leave to clean up
    (None, not taken: a live claim of another owner holds either id)."""
    found = await connection.execute(
        _CLAIMS_OF, {"key": claim["key"], "device": claim["device_key"]}
    )
    rows = found.all()
    now = time.time()
    if any(row.expires_at >= now and row.owner != claim["owner"] for row in rows):
        return None
    if rows:
        await connection.execute(_DELETE_CLAIMS, {"keys": [row.key for row in rows]})
    await connection.execute(_INSERT_CLAIM, claim)
    return tuple(dict.fromkeys(row.device_key for row in rows if row.owner != claim["owner"]))


async def _release(connection: DbConnection, claim: Claim, settled: bool) -> None:
    """Delete the claim if it is still this owner's; not `settled`: expire it instead."""
    mine = {"claim": id_key(claim.registration_id), "holder": claim.owner}
    await connection.execute(RELEASE_CLAIM if settled else EXPIRE_CLAIM, mine)
