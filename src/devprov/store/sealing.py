"""Which fields of which records hold secrets, and sealing them on the way into the store.

The store seals these fields as it writes a document and opens them as it reads one, so
everything above it sees plaintext and a copy of the database alone holds none: symmetric keys
of enrollments, groups and the built-in hubs' devices, webhook secrets of custom allocation, and
linked hubs' connection strings. `seal_all` is the one pass over them that seals what an older
devprov left in plaintext (at start-up) and re-seals under a new key (`devprov keys rotate`),
in one transaction.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import sqlalchemy as sa

from devprov.domain.records import Kind
from devprov.domain.sealing import Sealer, sealed_under
from devprov.store.connections import DbConnection
from devprov.store.tables import table_of

Path = tuple[str, ...]
FIELDS_VERSION = 1
"""Bump when SEALED_FIELDS gains a field: the next start then seals it in existing records."""
_KEYS: tuple[Path, ...] = (
    ("attestation", "symmetricKey", "primaryKey"),
    ("attestation", "symmetricKey", "secondaryKey"),
)
_ENROLLMENT = (*_KEYS, ("customAllocationDefinition", "webhookSecret"))
SEALED_FIELDS: Mapping[Kind, tuple[Path, ...]] = {
    Kind.ENROLLMENT: _ENROLLMENT,
    Kind.GROUP: _ENROLLMENT,
    Kind.LINKED_HUB: (("connectionString",),),
    Kind.HUB_DEVICE: (
        ("authentication", "symmetricKey", "primaryKey"),
        ("authentication", "symmetricKey", "secondaryKey"),
    ),
}


def _transform(
    document: Mapping[str, Any], paths: tuple[Path, ...], change: Callable[[str], str]
) -> dict[str, Any]:
    """A copy of `document` with each string at `paths` replaced by `change(value)` (only the
    dictionaries on the way are copied)."""
    result = dict(document)
    for path in paths:
        parent = result
        for name in path[:-1]:
            child = parent.get(name)
            if not isinstance(child, dict):
                break
            parent[name] = parent = dict(child)
        else:
            value = parent.get(path[-1])
            if isinstance(value, str) and value:
                parent[path[-1]] = change(value)
    return result


def seal_document(sealer: Sealer, kind: Kind, document: Mapping[str, Any]) -> dict[str, Any]:
    paths = SEALED_FIELDS.get(kind)
    if not paths:
        return dict(document)
    # Always sealed, even a value that looks sealed: what the layers above hand the store is
    # plaintext (a webhook secret may be any text), and opening takes off exactly one seal.
    return _transform(document, paths, sealer.seal_text)


def open_document(sealer: Sealer | None, kind: Kind, document: dict[str, Any]) -> dict[str, Any]:
    paths = SEALED_FIELDS.get(kind)
    if not paths or sealer is None:
        return document
    return _transform(document, paths, sealer.open_text)


def _values(document: Mapping[str, Any], paths: tuple[Path, ...]) -> list[str]:
    found = []
    for path in paths:
        value: Any = document
        for name in path:
            value = value.get(name) if isinstance(value, dict) else None
        if isinstance(value, str) and value:
            found.append(value)
    return found


async def seal_all(connection: DbConnection, sealer: Sealer) -> int:
    """Seal every secret field under the sealer's current key (plaintext ones, and those sealed
    under another key), in the caller's transaction; how many records changed. Revisions are
    not bumped: what the records say is unchanged, so caches of them stay right."""
    changed = 0
    for kind, paths in SEALED_FIELDS.items():
        table = table_of(kind)
        rows = (await connection.execute(sa.select(table.c.key, table.c.document))).all()
        for row in rows:
            if not any(sealer.needs_sealing(value) for value in _values(row.document, paths)):
                continue
            document = _transform(
                row.document,
                paths,
                lambda value: (
                    value if not sealer.needs_sealing(value) else sealer.reseal_text(value)
                ),
            )
            await connection.execute(
                sa.update(table).where(table.c.key == row.key).values(document=document)
            )
            changed += 1
    return changed


async def key_use(connection: DbConnection) -> dict[str, int]:
    """How many secret fields each key id seals (`plaintext` for those not sealed)."""
    counts: dict[str, int] = {}
    for kind, paths in SEALED_FIELDS.items():
        table = table_of(kind)
        for row in await connection.execute(sa.select(table.c.document)):
            for value in _values(row.document, paths):
                name = sealed_under(value) or "plaintext"
                counts[name] = counts.get(name, 0) + 1
    return counts
