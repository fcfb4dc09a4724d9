"""The schema's migrations: bringing a database to the newest revision, and telling whether it is.

Migrating is an explicit step (`devprov db upgrade`, and `devprov serve` before it listens), never
a side effect of opening the store: a management command on a database whose schema is behind
is told so instead of changing it.
"""

from __future__ import annotations

from pathlib import Path

import sqlalchemy as sa
from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy.engine import Connection

from devprov.store.connections import normalize_url

MIGRATIONS = Path(__file__).parent / "migrations"
MIGRATION_LOCK = 727376  # a PostgreSQL advisory lock id: one migrating process at a time


def _config(connection: Connection | None = None) -> Config:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    if connection is not None:
        config.attributes["connection"] = connection
    return config


def head_revision() -> str:
    """The newest revision this devprov knows."""
    head = ScriptDirectory.from_config(_config()).get_current_head()
    assert head is not None
    return head


def migrate(url: str) -> None:
    """Bring the schema to the newest revision (safe to run from several processes at once)."""
    engine = sa.create_engine(normalize_url(url))
    try:
        with engine.connect() as connection:
            if engine.dialect.name == "sqlite":
                connection.exec_driver_sql("PRAGMA journal_mode=WAL")
                connection.commit()
            _upgrade(connection)
    finally:
        engine.dispose()


def _upgrade(connection: Connection) -> None:
    with connection.begin():
        if connection.dialect.name == "postgresql":
            lock = sa.text("SELECT pg_advisory_xact_lock(:lock)")
            connection.execute(lock, {"lock": MIGRATION_LOCK})
        command.upgrade(_config(connection), "head")


def current_revision(url: str) -> str | None:
    """The revision the database is at (None for an empty database)."""
    engine = sa.create_engine(normalize_url(url))
    try:
        with engine.connect() as connection:
            return MigrationContext.configure(connection).get_current_revision()
    finally:
        engine.dispose()


def is_current(url: str) -> bool:
    return current_revision(url) == head_revision()


def compact(url: str) -> None:
    """Rewrite a SQLite file without its free pages, and empty its WAL: what was overwritten
    (plaintext secrets, before they were sealed) is then gone from the file. PostgreSQL keeps
    old row versions until VACUUM (FULL, to give the space back) and is left to its operator."""
    if not url.lower().startswith("sqlite"):
        return
    engine = sa.create_engine(normalize_url(url))
    try:
        with engine.connect() as connection:
            connection.exec_driver_sql("VACUUM")
            connection.exec_driver_sql("PRAGMA wal_checkpoint(TRUNCATE)")
    finally:
        engine.dispose()
