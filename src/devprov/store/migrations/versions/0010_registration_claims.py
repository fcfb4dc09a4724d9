"""One device, one place: registration claims, where each record puts its device, and which
operations are still running.

Revision ID: 0010_registration_claims
Revises: 0009_secrets_audit
Create Date: 2026-12-01
"""

from __future__ import annotations

import json
from typing import Any

import sqlalchemy as sa
from alembic import op

revision = "0010_registration_claims"
down_revision = "0009_secrets_audit"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("registrations") as batch:
        batch.add_column(sa.Column("hub_key", sa.String(256), nullable=True))
        batch.add_column(sa.Column("device_key", sa.String(256), nullable=True))
    op.create_index(
        "ix_registrations_device_key_hub_key", "registrations", ["device_key", "hub_key"]
    )
    with op.batch_alter_table("operations") as batch:
        batch.add_column(sa.Column("status", sa.String(16), nullable=True))
    op.create_index("ix_operations_status", "operations", ["status"])
    op.create_table(
        "registration_claims",
        sa.Column("key", sa.String(256), primary_key=True),
        sa.Column("device_key", sa.String(256), nullable=False, unique=True),
        sa.Column("owner", sa.String(128), nullable=False),
        sa.Column("expires_at", sa.Float, nullable=False),
    )
    op.create_index("ix_registration_claims_expires_at", "registration_claims", ["expires_at"])
    _fill_in()


def _document(value: Any) -> dict[str, Any]:
    return json.loads(value) if isinstance(value, str | bytes) else dict(value)


def _fill_in() -> None:
    """The new columns of the records already there, from their documents."""
    connection = op.get_bind()
    registrations = sa.table(
        "registrations",
        sa.column("key"),
        sa.column("document"),
        sa.column("hub_key"),
        sa.column("device_key"),
    )
    for row in connection.execute(sa.select(registrations.c.key, registrations.c.document)):
        document = _document(row.document)
        hub, device = document.get("assignedHub"), document.get("deviceId")
        if hub and device:
            connection.execute(
                sa.update(registrations)
                .where(registrations.c.key == row.key)
                .values(hub_key=hub.lower(), device_key=device.lower())
            )
    operations = sa.table(
        "operations", sa.column("key"), sa.column("document"), sa.column("status")
    )
    for row in connection.execute(sa.select(operations.c.key, operations.c.document)):
        status = _document(row.document).get("status")
        connection.execute(
            sa.update(operations).where(operations.c.key == row.key).values(status=status)
        )


def downgrade() -> None:
    op.drop_table("registration_claims")
    op.drop_index("ix_operations_status", "operations")
    with op.batch_alter_table("operations") as batch:
        batch.drop_column("status")
    op.drop_index("ix_registrations_device_key_hub_key", "registrations")
    with op.batch_alter_table("registrations") as batch:
        batch.drop_column("device_key")
        batch.drop_column("hub_key")
