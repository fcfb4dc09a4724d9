"""Enrollments and groups carry their attestation type in a column of its own, so that TLS
can load the X.509 ones without reading every enrollment.

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-26
"""

from __future__ import annotations

import json

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    for name in ("enrollments", "enrollment_groups"):
        with op.batch_alter_table(name) as batch:
            batch.add_column(sa.Column("attestation", sa.String(32), nullable=True))
            batch.create_index(f"ix_{name}_attestation", ["attestation"])
        table = sa.table(
            name, sa.column("key", sa.String), sa.column("document"), sa.column("attestation")
        )
        connection = op.get_bind()
        for key, document in connection.execute(sa.select(table.c.key, table.c.document)):
            parsed = json.loads(document) if isinstance(document, str) else document
            kind = (parsed.get("attestation") or {}).get("type")
            connection.execute(sa.update(table).where(table.c.key == key).values(attestation=kind))


def downgrade() -> None:
    for name in ("enrollments", "enrollment_groups"):
        with op.batch_alter_table(name) as batch:
            batch.drop_index(f"ix_{name}_attestation")
            batch.drop_column("attestation")
