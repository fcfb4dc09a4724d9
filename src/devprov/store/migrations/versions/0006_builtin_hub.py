"""The built-in `registry` connector becomes the `builtin` IoT hub: linked hubs get their own
iothubowner connection string, hub devices their registry shape and twin, and device-to-cloud
messages a table of their own.

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-01
"""

from __future__ import annotations

import base64
import json
import secrets
import uuid
from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None

NEVER = "0001-01-01T00:00:00Z"


def _documents(name: str) -> sa.TableClause:
    return sa.table(
        name,
        sa.column("key", sa.String),
        sa.column("etag", sa.String),
        sa.column("document", sa.JSON),
    )


def _rows(table: sa.TableClause) -> list[tuple[str, dict[str, Any]]]:
    connection = op.get_bind()
    return [
        (key, json.loads(document) if isinstance(document, str) else document)
        for key, document in connection.execute(sa.select(table.c.key, table.c.document))
    ]


def _save(table: sa.TableClause, key: str, document: dict[str, Any]) -> None:
    op.get_bind().execute(sa.update(table).where(table.c.key == key).values(document=document))


def _linked_hubs() -> None:
    hubs = _documents("linked_hubs")
    for key, hub in _rows(hubs):
        if hub.get("connector", "registry") != "registry":
            continue
        hub["connector"] = "builtin"
        if not hub.get("connectionString"):
            secret = base64.b64encode(secrets.token_bytes(32)).decode()
            hub["connectionString"] = (
                f"HostName={hub['hostName']};SharedAccessKeyName=iothubowner;SharedAccessKey={secret}"
            )
        _save(hubs, key, hub)
    revisions = sa.table("revisions", sa.column("kind"), sa.column("revision"))
    op.get_bind().execute(
        sa.update(revisions)
        .where(revisions.c.kind == "linked_hubs")
        .values(revision=revisions.c.revision + 1)
    )


def _twin(initial: dict[str, Any] | None, now: str) -> dict[str, Any]:
    initial = initial or {}
    strip = {"$metadata", "$version"}
    tags = {k: v for k, v in (initial.get("tags") or {}).items() if k not in strip}
    desired = (initial.get("properties") or {}).get("desired") or {}
    desired = {k: v for k, v in desired.items() if k not in strip}
    return {
        "tags": tags,
        "properties": {
            "desired": {
                **desired,
                "$metadata": {"$lastUpdated": now, "$lastUpdatedVersion": 1},
                "$version": 1,
            },
            "reported": {"$metadata": {"$lastUpdated": now}, "$version": 1},
        },
        "version": 1,
    }


def _hub_devices() -> None:
    devices = _documents("hub_devices")
    now = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    for key, old in _rows(devices):
        if "generationId" in old:
            continue
        authentication = dict(old.get("authentication") or {"type": "sas"})
        authentication.setdefault("symmetricKey", {"primaryKey": None, "secondaryKey": None})
        authentication.setdefault(
            "x509Thumbprint", {"primaryThumbprint": None, "secondaryThumbprint": None}
        )
        device = {
            "deviceId": old["deviceId"],
            "generationId": str(uuid.uuid4().int)[:18],
            "etag": base64.b64encode(secrets.token_bytes(6)).decode(),
            "status": "enabled",
            "statusReason": None,
            "statusUpdatedTime": NEVER,
            "authentication": authentication,
            "capabilities": old.get("capabilities") or {"iotEdge": False},
            "cloudToDeviceMessageCount": 0,
            "twin": _twin(old.get("twin"), now),
            "registrationId": old.get("registrationId"),
        }
        _save(devices, key, device)


def upgrade() -> None:
    _linked_hubs()
    _hub_devices()
    op.create_table(
        "hub_messages",
        sa.Column(
            "id",
            sa.BigInteger().with_variant(sa.Integer, "sqlite"),
            primary_key=True,
            autoincrement=True,
        ),
        sa.Column("hub_key", sa.String(256), nullable=False),
        sa.Column("device_id", sa.String(256), nullable=False),
        sa.Column("enqueued_at", sa.Float, nullable=False),
        sa.Column("document", sa.JSON, nullable=False),
    )
    op.create_index("ix_hub_messages_hub_key_id", "hub_messages", ["hub_key", "id"])
    op.create_table(
        "hub_message_counts",
        sa.Column("hub_key", sa.String(256), primary_key=True),
        sa.Column("received", sa.BigInteger, nullable=False),
        sa.Column("dropped", sa.BigInteger, nullable=False),
    )


def downgrade() -> None:
    op.drop_table("hub_message_counts")
    op.drop_index("ix_hub_messages_hub_key_id", "hub_messages")
    op.drop_table("hub_messages")
