"""The deployment's identity in the shared store.

`deployment` holds one row: the id scope, the service policies and the TLS CA every node of a
deployment shares (its keys sealed, see store/deployment.py).

Revision ID: 0011_deployment
Revises: 0010_registration_claims
Create Date: 2026-12-01
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0011_deployment"
down_revision = "0010_registration_claims"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "deployment",
        sa.Column("key", sa.String(64), primary_key=True),
        sa.Column("document", sa.JSON, nullable=False),
        sa.Column("updated_at", sa.Float, nullable=False),
    )


def downgrade() -> None:
    op.drop_table("deployment")
