"""The first schema: enrollments, groups, registrations, operations, linked hubs, hub devices.

Revision ID: 0001
Revises:
Create Date: 2026-11-26
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def _document_table(name: str, *extra: sa.Column[str]) -> None:
    op.create_table(
        name,
        sa.Column("key", sa.String(256), primary_key=True),
        *extra,
        sa.Column("etag", sa.String(128), nullable=False),
        sa.Column("document", sa.JSON, nullable=False),
        sa.Column("updated_at", sa.Float, nullable=False),
    )


def upgrade() -> None:
    _document_table("enrollments")
    _document_table("enrollment_groups")
    _document_table("registrations", sa.Column("group_key", sa.String(256), nullable=True))
    op.create_index("ix_registrations_group_key", "registrations", ["group_key"])
    _document_table("operations", sa.Column("registration_key", sa.String(256), nullable=False))
    op.create_index("ix_operations_registration_key", "operations", ["registration_key"])
    _document_table("linked_hubs")
    _document_table("hub_devices", sa.Column("hub_key", sa.String(256), nullable=False))
    op.create_index("ix_hub_devices_hub_key", "hub_devices", ["hub_key"])


def downgrade() -> None:
    for name in (
        "hub_devices",
        "linked_hubs",
        "operations",
        "registrations",
        "enrollment_groups",
        "enrollments",
    ):
        op.drop_table(name)
