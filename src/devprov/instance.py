"""The instance: the identity one devprov keeps in its data dir (id scope, policies, database).

The instance file (`devprov.json` in the data dir) holds what must survive restarts and be shared
with other devprov commands: the id scope, the shared access policies, the database URL and where
the server listens. `devprov info` and `devprov hub add` read it, so they need only `--data-dir`.
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
    return Instance.model_validate_json(path.read_text())


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
    path = data_dir / INSTANCE_FILE
    temporary = path.with_suffix(".tmp")
    with open(os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600), "w") as handle:
        handle.write(json.dumps(instance.model_dump(), indent=2) + "\n")
    temporary.replace(path)
