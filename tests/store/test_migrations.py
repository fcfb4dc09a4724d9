"""Alembic migrations: a database made by an older devprov is brought to the newest schema."""

from __future__ import annotations

import json

import sqlalchemy as sa
from alembic import command
from alembic.config import Config

from devprov.store.database import MIGRATIONS, migrate, normalize_url


def _upgrade_to(url: str, revision: str) -> None:
    engine = sa.create_engine(normalize_url(url))
    with engine.begin() as connection:
        config = Config()
        config.set_main_option("script_location", str(MIGRATIONS))
        config.attributes["connection"] = connection
        command.upgrade(config, revision)
    engine.dispose()


def test_attestation_column_is_filled_in_for_existing_enrollments(database_url: str) -> None:
    _upgrade_to(database_url, "0004")
    engine = sa.create_engine(normalize_url(database_url))
    document = {"registrationId": "old", "attestation": {"type": "x509", "x509": {}}}
    with engine.begin() as connection:
        connection.execute(
            sa.text(
                "INSERT INTO enrollments (key, etag, document, updated_at)"
                " VALUES ('old', 'e', :document, 0)"
            ),
            {"document": json.dumps(document)},
        )

    migrate(database_url)

    with engine.connect() as connection:
        kind = connection.execute(
            sa.text("SELECT attestation FROM enrollments WHERE key = 'old'")
        ).scalar_one()
        revisions = connection.execute(sa.text("SELECT count(*) FROM revisions")).scalar_one()
    engine.dispose()
    assert kind == "x509"
    assert revisions == 4
