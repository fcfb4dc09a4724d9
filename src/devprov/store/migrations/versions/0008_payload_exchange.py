"""Custom allocation exchanges (the webhook log) and credential policies (issuing CAs).

Revision ID: 0008_payload_exchange
Revises: 0006
Create Date: 2026-12-01
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0008_payload_exchange"
down_revision = "0006"  # the integrator re-chains at merge
branch_labels = None
depends_on = None


def _document_columns() -> list[sa.Column[str]]:
    return [
        sa.Column("etag", sa.String(128), nullable=False),
        sa.Column("document", sa.JSON, nullable=False),
        sa.Column("updated_at", sa.Float, nullable=False),
    ]


def upgrade() -> None:
    op.create_table(
        "exchanges",
        sa.Column("key", sa.String(256), primary_key=True),
        sa.Column("enrollment_key", sa.String(300), nullable=False),
        sa.Column("registration_key", sa.String(256), nullable=False),
        sa.Column("outcome", sa.String(16), nullable=False),
        *_document_columns(),
    )
    op.create_index("ix_exchanges_enrollment_key", "exchanges", ["enrollment_key"])
    op.create_index("ix_exchanges_registration_key", "exchanges", ["registration_key"])
    op.create_table(
        "credential_policies",
        sa.Column("key", sa.String(256), primary_key=True),
        *_document_columns(),
    )
    revisions = sa.table("revisions", sa.column("kind", sa.String), sa.column("revision"))
    op.bulk_insert(revisions, [{"kind": "credential_policies", "revision": 0}])


def downgrade() -> None:
    op.execute(sa.text("DELETE FROM revisions WHERE kind = 'credential_policies'"))
    op.drop_table("credential_policies")
    op.drop_index("ix_exchanges_registration_key", "exchanges")
    op.drop_index("ix_exchanges_enrollment_key", "exchanges")
    op.drop_table("exchanges")
