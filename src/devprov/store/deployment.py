"""The deployment's identity in the shared store: one id scope, service policies and TLS CA.

Every node on a store is the same DPS to devices and service clients. The first node to start
on a store writes the identity it made for itself; every later node (or a restart of any) reads
what is there and takes it. Claiming is one insert that does nothing when a row exists, then a
read, so nodes starting together agree on whichever insert won.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite

from devprov.domain.policies import AccessPolicy
from devprov.domain.sealing import Sealer
from devprov.store.connections import normalize_url
from devprov.store.tables import deployment

KEY = "identity"


@dataclass(frozen=True)
class DeploymentIdentity:
    """What every node of one deployment shares (PEM text for the CA)."""

    id_scope: str
    policies: tuple[AccessPolicy, ...]
    ca_cert: str
    ca_key: str


def claim(url: str, offered: DeploymentIdentity, sealer: Sealer) -> DeploymentIdentity:
    """The store's identity: `offered` when the store had none, else the one it holds. Its
    keys are sealed, so every node needs the same sealing key (key file or variable)."""
    engine = sa.create_engine(normalize_url(url))
    try:
        with engine.begin() as connection:
            insert = (postgresql.insert if engine.dialect.name == "postgresql" else sqlite.insert)(
                deployment
            )
            row = {"key": KEY, "document": _document(offered, sealer), "updated_at": time.time()}
            connection.execute(insert.values(**row).on_conflict_do_nothing())
            stored = connection.execute(
                sa.select(deployment.c.document).where(deployment.c.key == KEY)
            ).scalar_one()
            identity = _identity(stored, sealer)
            if any(sealer.needs_sealing(value) for value in _sealed_values(stored)):
                # plaintext, or sealed under an older key (`devprov keys rotate`): seal it anew
                connection.execute(
                    sa.update(deployment)
                    .where(deployment.c.key == KEY)
                    .values(document=_document(identity, sealer), updated_at=time.time())
                )
        return identity
    finally:
        engine.dispose()


def reseal(url: str, sealer: Sealer) -> bool:
    """Seal the deployment's keys anew under the sealer's current key (`devprov keys rotate`,
    while the sealer still holds the old key); False when the store holds no deployment."""
    engine = sa.create_engine(normalize_url(url))
    try:
        with engine.begin() as connection:
            stored = connection.execute(
                sa.select(deployment.c.document).where(deployment.c.key == KEY)
            ).scalar_one_or_none()
            if stored is None:
                return False
            connection.execute(
                sa.update(deployment)
                .where(deployment.c.key == KEY)
                .values(
                    document=_document(_identity(stored, sealer), sealer), updated_at=time.time()
                )
            )
        return True
    finally:
        engine.dispose()


def _document(identity: DeploymentIdentity, sealer: Sealer) -> dict[str, Any]:
    return {
        "idScope": identity.id_scope,
        "policies": [
            {
                "keyName": policy.key_name,
                "primaryKey": sealer.seal_text(policy.primary_key),
                "secondaryKey": sealer.seal_text(policy.secondary_key),
                "rights": list(policy.rights),
            }
            for policy in identity.policies
        ],
        "caCertificate": identity.ca_cert,
        "caKey": sealer.seal_text(identity.ca_key),
    }


def _sealed_values(document: dict[str, Any]) -> list[str]:
    keys = [
        policy[name] for policy in document["policies"] for name in ("primaryKey", "secondaryKey")
    ]
    return [*keys, document["caKey"]]


def _identity(document: dict[str, Any], sealer: Sealer) -> DeploymentIdentity:
    return DeploymentIdentity(
        id_scope=document["idScope"],
        policies=tuple(
            AccessPolicy(
                key_name=policy["keyName"],
                primary_key=sealer.open_text(policy["primaryKey"]),
                secondary_key=sealer.open_text(policy["secondaryKey"]),
                rights=policy["rights"],
            )
            for policy in document["policies"]
        ),
        ca_cert=document["caCertificate"],
        ca_key=sealer.open_text(document["caKey"]),
    )
