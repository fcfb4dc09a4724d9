"""The schema: one table per kind of record, each holding the record's JSON document.

Records are kept as the Azure JSON documents they are (the schema is wide and grows with API
versions); the columns beside a document are what devprov looks records up by.
"""

from __future__ import annotations

import sqlalchemy as sa

from devprov.domain.records import Kind

metadata = sa.MetaData()


def _document_table(name: str, *extra: sa.Column[str]) -> sa.Table:
    return sa.Table(
        name,
        metadata,
        sa.Column("key", sa.String(256), primary_key=True),
        *extra,
        sa.Column("etag", sa.String(128), nullable=False),
        sa.Column("document", sa.JSON, nullable=False),
        sa.Column("updated_at", sa.Float, nullable=False),
    )


enrollments = _document_table(
    "enrollments", sa.Column("attestation", sa.String(32), nullable=True, index=True)
)
enrollment_groups = _document_table(
    "enrollment_groups", sa.Column("attestation", sa.String(32), nullable=True, index=True)
)
registrations = _document_table(
    "registrations",
    sa.Column("group_key", sa.String(256), nullable=True, index=True),
    sa.Column("operation_id", sa.String(128), nullable=True),
    # Where the record puts the device (lower case): one device id on one hub is one record's.
    sa.Column("hub_key", sa.String(256), nullable=True),
    sa.Column("device_key", sa.String(256), nullable=True),
)
sa.Index("ix_registrations_device_key_hub_key", registrations.c.device_key, registrations.c.hub_key)
operations = _document_table(
    "operations",
    sa.Column("registration_key", sa.String(256), nullable=False, index=True),
    sa.Column("status", sa.String(16), nullable=True, index=True),
)
# Registrations running now: one per registration id and one per device id, across processes
# and nodes; a claim past `expires_at` was left by a process that stopped (or ran out of time).
registration_claims = sa.Table(
    "registration_claims",
    metadata,
    sa.Column("key", sa.String(256), primary_key=True),
    sa.Column("device_key", sa.String(256), nullable=False, unique=True),
    sa.Column("owner", sa.String(128), nullable=False),
    sa.Column("expires_at", sa.Float, nullable=False, index=True),
)
linked_hubs = _document_table("linked_hubs")
certificates = _document_table("certificates")
revisions = sa.Table(
    "revisions",
    metadata,
    sa.Column("kind", sa.String(64), primary_key=True),
    sa.Column("revision", sa.BigInteger, nullable=False),
)
tpm_challenges = _document_table("tpm_challenges")
hub_devices = _document_table(
    "hub_devices", sa.Column("hub_key", sa.String(256), nullable=False, index=True)
)
# Device-to-cloud messages of the built-in hubs: an append-only log, oldest pruned per hub.
hub_messages = sa.Table(
    "hub_messages",
    metadata,
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
    sa.Index("ix_hub_messages_hub_key_id", "hub_key", "id"),
)
hub_message_counts = sa.Table(
    "hub_message_counts",
    metadata,
    sa.Column("hub_key", sa.String(256), primary_key=True),
    sa.Column("received", sa.BigInteger, nullable=False),
    sa.Column("dropped", sa.BigInteger, nullable=False),
)

# Custom allocation exchanges, keyed by a time-ordered id; bounded per enrollment.
exchanges = _document_table(
    "exchanges",
    sa.Column("enrollment_key", sa.String(300), nullable=False, index=True),
    sa.Column("registration_key", sa.String(256), nullable=False, index=True),
    sa.Column("outcome", sa.String(16), nullable=False),
)
credential_policies = _document_table("credential_policies")
# The deployment's identity, shared by every node on this store (store/deployment.py).
deployment = sa.Table(
    "deployment",
    metadata,
    sa.Column("key", sa.String(64), primary_key=True),
    sa.Column("document", sa.JSON, nullable=False),
    sa.Column("updated_at", sa.Float, nullable=False),
)

# Management writes (service API, CLI): who, what, when, from where; pruned by age.
audit = sa.Table(
    "audit",
    metadata,
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
# Which key the secrets were last all sealed under (a start-up skips the pass when current).
sealing = sa.Table(
    "sealing",
    metadata,
    sa.Column("name", sa.String(64), primary_key=True),
    sa.Column("value", sa.String(256), nullable=False),
)


def table_of(kind: Kind) -> sa.Table:
    """The table that holds records of `kind` (named after it)."""
    return metadata.tables[kind.value]
