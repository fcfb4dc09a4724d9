"""Credential policies as kept: the record in the store (so every worker and TLS see the
issuing CAs) and each issuing CA's private key in the data dir, never in the store.

Keys are written with file mode 0600 in a 0700 directory
(`DATA_DIR/credential-policies/NAME/THUMBPRINT.key.pem`), sealed (the PEM as sealed text, see
domain/sealing.py); a plain PEM left by an older devprov is read as it
is and sealed by `reseal_keys` (at start, and by `devprov keys rotate`)."""

from __future__ import annotations

import asyncio
import os
from pathlib import Path

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from devprov.domain.certificates import sha256_thumbprint
from devprov.domain.credentials import (
    DEFAULT_VALIDITY_DAYS,
    CredentialPolicy,
    Issuer,
    IssuingKey,
    new_issuing_ca,
)
from devprov.domain.errors import CREDENTIAL_POLICY_NOT_FOUND, DpsError, conflict, not_found
from devprov.domain.ids import id_key, validate_id
from devprov.domain.records import Kind, Put, RecordStore
from devprov.domain.sealing import Sealer, is_sealed
from devprov.keyring import load_sealer

KEY_DIRECTORY = "credential-policies"


def _write_file(path: Path, pem: bytes, sealer: Sealer) -> None:
    temporary = path.with_suffix(".tmp")
    with open(os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600), "wb") as out:
        out.write(sealer.seal(pem).encode())
    temporary.replace(path)


def _pem(data: bytes, sealer: Sealer) -> bytes:
    text = data.decode("ascii", "replace").strip()
    return sealer.open(text) if is_sealed(text) else data


def reseal_keys(data_dir: Path, sealer: Sealer) -> int:
    """Seal every issuing CA key file under the current key (plain ones, and those sealed under
    another key); how many were rewritten."""
    key_dir = data_dir / KEY_DIRECTORY
    rewritten = 0
    for path in sorted(key_dir.glob("*/*.key.pem")) if key_dir.exists() else []:
        data = path.read_bytes()
        if sealer.needs_sealing(data.decode("ascii", "replace").strip()):
            _write_file(path, _pem(data, sealer), sealer)
            rewritten += 1
    return rewritten


class IssuingCas:
    """Creates, rotates and reads credential policies; hands the registration service an
    `Issuer` (policy and current key) by name, caching keys by CA."""

    def __init__(self, store: RecordStore, data_dir: Path, sealer: Sealer | None = None) -> None:
        self.store = store
        self.key_dir = data_dir / KEY_DIRECTORY
        self.sealer: Sealer = sealer if sealer is not None else load_sealer(data_dir)
        self._keys: dict[str, IssuingKey] = {}

    def _key_path(self, policy: str, thumbprint: str) -> Path:
        return self.key_dir / id_key(policy) / f"{thumbprint[:32]}.key.pem"

    def _write_key(self, policy: str, thumbprint: str, key: IssuingKey) -> None:
        path = self._key_path(policy, thumbprint)
        path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        os.chmod(self.key_dir, 0o700)
        pem = key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
        self._write_file(path, pem)

    def _write_file(self, path: Path, pem: bytes) -> None:
        _write_file(path, pem, self.sealer)

    def _pem(self, data: bytes) -> bytes:
        return _pem(data, self.sealer)

    def reseal_keys(self) -> int:
        return reseal_keys(self.key_dir.parent, self.sealer)

    def _read_key(self, policy: str, thumbprint: str) -> IssuingKey:
        path = self._key_path(policy, thumbprint)
        try:
            key = serialization.load_pem_private_key(self._pem(path.read_bytes()), None)
        except FileNotFoundError:
            raise DpsError(
                500,
                500000,
                f"The issuing CA key of credential policy {policy!r} is not in this data dir"
                f" ({path}).",
            ) from None
        if not isinstance(key, ec.EllipticCurvePrivateKey):
            raise DpsError(500, 500000, f"{path} does not hold an EC key.")
        return key

    async def policy(self, name: str) -> CredentialPolicy | None:
        stored = await self.store.get(Kind.CREDENTIAL_POLICY, id_key(name))
        return CredentialPolicy.from_document(stored.document) if stored else None

    async def policies(self) -> list[CredentialPolicy]:
        rows = await self.store.page(Kind.CREDENTIAL_POLICY)
        return [CredentialPolicy.from_document(row.document) for row in rows]

    async def issuer(self, name: str) -> Issuer | None:
        """The policy and its current CA's key (read once per CA, then kept)."""
        policy = await self.policy(name)
        if policy is None:
            return None
        thumbprint = sha256_thumbprint(policy.current)
        key = self._keys.get(thumbprint)
        if key is None:
            key = await asyncio.to_thread(self._read_key, policy.name, thumbprint)
            self._keys[thumbprint] = key
        return Issuer(policy, key)

    async def create(self, name: str, days: int = DEFAULT_VALIDITY_DAYS) -> CredentialPolicy:
        validate_id(name, "credential policy name")
        if days < 1:
            raise DpsError(400, 400004, "A credential policy's validity is at least one day.")
        if await self.policy(name) is not None:
            raise conflict(f"A credential policy named {name!r} already exists.")
        certificate, key = new_issuing_ca(name)
        self._write_key(name, sha256_thumbprint(certificate), key)
        policy = CredentialPolicy(name, days, (certificate,))
        document = policy.to_document()
        await self.store.create(
            Put(Kind.CREDENTIAL_POLICY, id_key(name), document["updated"], document)
        )
        return policy

    async def rotate(self, name: str) -> CredentialPolicy:
        """A new issuing CA signs from now on; the old ones stay trusted, so certificates they
        issued keep working until they expire."""
        stored = await self.store.get(Kind.CREDENTIAL_POLICY, id_key(name))
        if stored is None:
            raise self._missing(name)
        old = CredentialPolicy.from_document(stored.document)
        certificate, key = new_issuing_ca(old.name)
        self._write_key(old.name, sha256_thumbprint(certificate), key)
        policy = CredentialPolicy(old.name, old.validity_days, (certificate, *old.issuing_cas))
        document = policy.to_document(stored.document.get("created"))
        await self.store.replace(
            Put(Kind.CREDENTIAL_POLICY, id_key(name), document["updated"], document), stored.etag
        )
        return policy

    async def remove(self, name: str) -> None:
        """Forget a policy (its keys stay in the data dir, for the record)."""
        if not await self.store.delete(Kind.CREDENTIAL_POLICY, id_key(name)):
            raise self._missing(name)

    @staticmethod
    def _missing(name: str) -> DpsError:
        return not_found(
            f"There is no credential policy named {name!r}.", CREDENTIAL_POLICY_NOT_FOUND
        )
