"""Verified CAs, and the TPM challenges handed out to devices.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-26
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def _document_table(name: str) -> None:
    op.create_table(
        name,
        sa.Column("key", sa.String(256), primary_key=True),
        sa.Column("etag", sa.String(128), nullable=False),
        sa.Column("document", sa.JSON, nullable=False),
        sa.Column("updated_at", sa.Float, nullable=False),
    )


def upgrade() -> None:
    _document_table("certificates")
    _document_table("tpm_challenges")


def downgrade() -> None:
    op.drop_table("tpm_challenges")
    op.drop_table("certificates")
