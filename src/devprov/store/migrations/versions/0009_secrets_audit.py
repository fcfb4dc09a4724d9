"""The audit log of management writes, and which key the store's secrets are sealed under.

Revision ID: 0009_secrets_audit
Revises: 0008_payload_exchange
Create Date: 2026-12-01

Secrets already in the store stay as they are here: sealing needs the key, which migrations do
not hold, so `devprov serve` (and `devprov db upgrade`) seal them once, right after migrating.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0009_secrets_audit"
down_revision = "0008_payload_exchange"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "audit",
        sa.Column(
            "id",
            sa.BigInteger().with_variant(sa.Integer, "sqlite"),
            primary_key=True,
            autoincrement=True,
        ),
        sa.Column("at", sa.Float, nullable=False, index=True),
        sa.Column("who", sa.String(256), nullable=False),
        sa.Column("method", sa.String(16), nullable=False),
        sa.Column("path", sa.String(1024), nullable=False),
        sa.Column("resource", sa.String(512), nullable=True),
        sa.Column("status", sa.Integer, nullable=False),
        sa.Column("peer", sa.String(256), nullable=True),
    )
    op.create_table(
        "sealing",
        sa.Column("name", sa.String(64), primary_key=True),
        sa.Column("value", sa.String(256), nullable=False),
    )


def downgrade() -> None:
    op.drop_table("sealing")
    op.drop_table("audit")
