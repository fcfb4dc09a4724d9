"""A revision counter per kind of record that caches depend on.

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-26
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    table = op.create_table(
        "revisions",
        sa.Column("kind", sa.String(64), primary_key=True),
        sa.Column("revision", sa.BigInteger, nullable=False),
    )
    op.bulk_insert(
        table,
        [
            {"kind": kind, "revision": 0}
            for kind in ("enrollments", "enrollment_groups", "linked_hubs", "certificates")
        ],
    )


def downgrade() -> None:
    op.drop_table("revisions")
