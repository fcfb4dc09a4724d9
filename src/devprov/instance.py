"""The instance: the identity one devprov keeps in its data dir (id scope, policies, database).

The instance file (`devprov.json` in the data dir) holds what must survive restarts and be shared
with other devprov commands: the id scope, the shared access policies, the database URL and where
the server listens. `devprov info` and `devprov hub add` read it, so they need only `--data-dir`.
The policies' keys are sealed in it (keyring.py): the file alone does not give them away.
"""

from __future__ import annotations

import json
import os
import secrets
import string
from pathlib import Path
from typing import Any

from pydantic import BaseModel, Field

from devprov.domain.keys import generate_key
from devprov.domain.policies import OWNER_POLICY, AccessPolicy
from devprov.domain.sealing import is_sealed
from devprov.keyring import load_sealer

INSTANCE_FILE = "devprov.json"
WILDCARD_HOSTS = {"0.0.0.0", "::", ""}


class Instance(BaseModel):
    """The persisted identity of one devprov instance."""

    id_scope: str
    policies: list[AccessPolicy]
    database: str
    host: str = "localhost"
    names: list[str] = Field(default_factory=list)
    https_port: int = 443
    mqtt_port: int = 8883
    amqp_port: int = 5671

    @property
    def host_name(self) -> str:
        """The name devices and service clients should dial."""
        if self.names:
            return self.names[0]
        return "localhost" if self.host in WILDCARD_HOSTS else self.host

    def policy(self, key_name: str) -> AccessPolicy | None:
        return next((p for p in self.policies if p.key_name.lower() == key_name.lower()), None)

    def connection_string(self, key_name: str = OWNER_POLICY) -> str:
        policy = self.policy(key_name)
        assert policy is not None
        host = self.host_name if self.https_port == 443 else f"{self.host_name}:{self.https_port}"
        return (
            f"HostName={host};SharedAccessKeyName={policy.key_name};"
            f"SharedAccessKey={policy.primary_key}"
        )


def new_id_scope() -> str:
    """Azure id scopes look like 0ne00A1B2C3."""
    return "0ne" + "".join(secrets.choice(string.hexdigits.upper()[:16]) for _ in range(8))


def load_instance(data_dir: Path) -> Instance | None:
    path = data_dir / INSTANCE_FILE
    if not path.exists():
        return None
    data = json.loads(path.read_text())
    keys = [(p, name) for p in data.get("policies", []) for name in _POLICY_KEYS if name in p]
    if any(is_sealed(policy[name]) for policy, name in keys):
        sealer = load_sealer(data_dir, create=False)
        for policy, name in keys:
            policy[name] = sealer.open_text(policy[name])
    return Instance.model_validate(data)


_POLICY_KEYS = ("primary_key", "secondary_key")


def ensure_instance(data_dir: Path, **updates: Any) -> Instance:
    """Load the instance, creating it on first start, and record the given settings."""
    data_dir.mkdir(parents=True, exist_ok=True)
    instance = load_instance(data_dir) or Instance(
        id_scope=new_id_scope(),
        policies=[
            AccessPolicy(
                key_name=OWNER_POLICY, primary_key=generate_key(), secondary_key=generate_key()
            )
        ],
        database=f"sqlite:///{(data_dir / 'devprov.db').resolve()}",
    )
    changed = instance.model_copy(update={k: v for k, v in updates.items() if v is not None})
    save_instance(data_dir, changed)
    return changed


def save_instance(data_dir: Path, instance: Instance) -> None:
    """Write the instance file, its policies' keys sealed under the data dir's current key."""
    path = data_dir / INSTANCE_FILE
    temporary = path.with_suffix(".tmp")
    data = instance.model_dump()
    sealer = load_sealer(data_dir)
    for policy in data["policies"]:
        for name in _POLICY_KEYS:
            policy[name] = sealer.seal_text(policy[name])
    with open(os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600), "w") as handle:
        handle.write(json.dumps(data, indent=2) + "\n")
    temporary.replace(path)
