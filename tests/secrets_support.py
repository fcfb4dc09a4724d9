"""Looking for secrets where they must not be: every table of a database, and files on disk."""

from __future__ import annotations

import base64
from collections.abc import Iterable
from pathlib import Path

import sqlalchemy as sa

from devprov.store.connections import normalize_url


def forms(secret: str) -> set[bytes]:
    """The ways a secret could show up: as text, and its bytes if it is base64."""
    found = {secret.encode()}
    try:
        raw = base64.b64decode(secret, validate=True)
    except ValueError:
        return found
    if len(raw) >= 16:
        found.add(raw)
        found.add(base64.b64encode(raw))
    return found


def database_text(url: str) -> bytes:
    """Every value of every table, as the database hands it out (PostgreSQL's and SQLite's
    tables read directly, not through devprov), and for SQLite the file itself (and its WAL)."""
    engine = sa.create_engine(normalize_url(url))
    parts: list[bytes] = []
    try:
        with engine.connect() as connection:
            tables = sa.inspect(connection).get_table_names()
            for table in tables:
                for row in connection.execute(sa.text(f'SELECT * FROM "{table}"')):
                    parts.extend(str(value).encode() for value in row)
    finally:
        engine.dispose()
    if url.startswith("sqlite"):
        path = Path(url.split("///", 1)[1])
        for file in (path, Path(f"{path}-wal")):
            if file.exists():
                parts.append(file.read_bytes())
    return b"\n".join(parts)


def leaked(haystack: bytes, secrets: Iterable[str]) -> list[str]:
    """The secrets (some form of them) found in `haystack`."""
    return [s for s in secrets if any(form in haystack for form in forms(s))]
