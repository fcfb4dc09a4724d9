"""Filling a store with many records fast, to measure devprov with a large store.

Registration records and individual enrollments go in by bulk inserts, not the API: a million API
calls would take long."""

from __future__ import annotations

import base64
import os
import time
from collections.abc import Callable, Iterator
from typing import Any

import sqlalchemy as sa

from devprov.domain.clock import now_timestamp
from devprov.store import tables
from devprov.store.connections import normalize_url
from devprov.store.schema import migrate

CHUNK = 10_000


def _key() -> str:
    return base64.b64encode(os.urandom(64)).decode()


def _enrollments(count: int, stamp: str) -> Iterator[dict[str, Any]]:
    for number in range(count):
        registration_id = f"seeded-device-{number:08d}"
        document = {
            "registrationId": registration_id,
            "attestation": {
                "type": "symmetricKey",
                "symmetricKey": {"primaryKey": _key(), "secondaryKey": _key()},
            },
            "provisioningStatus": "enabled",
            "createdDateTimeUtc": stamp,
            "lastUpdatedDateTimeUtc": stamp,
            "etag": "seeded",
        }
        yield {
            "key": registration_id,
            "etag": "seeded",
            "document": document,
            "updated_at": time.time(),
            "attestation": "symmetricKey",
        }


def _registrations(count: int, stamp: str) -> Iterator[dict[str, Any]]:
    for number in range(count):
        registration_id = f"seeded-registration-{number:08d}"
        document = {
            "registrationId": registration_id,
            "createdDateTimeUtc": stamp,
            "assignedHub": f"seeded-hub-{number % 4}.example",
            "deviceId": registration_id,
            "status": "assigned",
            "substatus": "initialAssignment",
            "lastUpdatedDateTimeUtc": stamp,
            "etag": "seeded",
            "payload": {"firmware": "1.0.0"},
            "symmetricKey": {"enrollmentGroupId": "seeded-group"},
        }
        yield {
            "key": registration_id,
            "etag": "seeded",
            "document": document,
            "updated_at": time.time(),
            "group_key": "seeded-group",
            "operation_id": None,
        }


def seed(
    url: str, registrations: int, enrollments: int, progress: Callable[[str, int], None]
) -> None:
    migrate(url)
    engine = sa.create_engine(normalize_url(url))
    stamp = now_timestamp()
    try:
        for table, rows, name in (
            (tables.enrollments, _enrollments(enrollments, stamp), "enrollments"),
            (tables.registrations, _registrations(registrations, stamp), "registrations"),
        ):
            chunk: list[dict[str, Any]] = []
            for row in rows:
                chunk.append(row)
                if len(chunk) == CHUNK:
                    _insert(engine, table, chunk)
                    progress(name, len(chunk))
                    chunk = []
            if chunk:
                _insert(engine, table, chunk)
                progress(name, len(chunk))
        with engine.begin() as connection:  # caches of other processes must see the change
            revisions = tables.revisions
            connection.execute(sa.update(revisions).values(revision=revisions.c.revision + 1))
    finally:
        engine.dispose()


def _insert(engine: sa.Engine, table: sa.Table, rows: list[dict[str, Any]]) -> None:
    with engine.begin() as connection:
        connection.execute(sa.insert(table), rows)
