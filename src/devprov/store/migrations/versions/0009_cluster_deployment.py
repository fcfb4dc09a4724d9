"""The deployment's identity in the shared store, and the state of each slow operation.

`deployment` holds one row: the id scope, the service policies and the TLS CA every node of a
deployment shares (its secrets sealed, see store/sealing.py). `operations.state` says whether an
operation is still `assigning`, so that one left so by a node that died can be found and failed.

Revision ID: 0009_cluster_deployment
Revises: 0008_payload_exchange
Create Date: 2026-12-01
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0009_cluster_deployment"
down_revision = "0008_payload_exchange"  # the integrator re-chains at merge
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "deployment",
        sa.Column("key", sa.String(64), primary_key=True),
        sa.Column("document", sa.JSON, nullable=False),
        sa.Column("updated_at", sa.Float, nullable=False),
    )
    with op.batch_alter_table("operations") as batch:
        batch.add_column(sa.Column("state", sa.String(16), nullable=True))
        batch.create_index("ix_operations_state", ["state"])


def downgrade() -> None:
    with op.batch_alter_table("operations") as batch:
        batch.drop_index("ix_operations_state")
        batch.drop_column("state")
    op.drop_table("deployment")
