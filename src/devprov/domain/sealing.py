"""Sealing secrets at rest: AES-256-GCM under a key kept outside the store, with key ids.

A sealed value is text, `sealed:v1:KEYID:BASE64URL(nonce || ciphertext)`, so it fits in any
JSON field or text column. The key id (the first 8 hex digits of the key's SHA-256) names the
key that sealed it, so several keys can be held at once: the first seals, any of them opens,
and a rotation re-seals every value under a new first key. Whoever holds the keys (a key file in
the data dir, or an environment variable: see keyring.py) hands them in; nothing here does I/O.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import os
from collections.abc import Callable, Sequence

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

PREFIX = "sealed:v1:"
KEY_BYTES = 32
NONCE_BYTES = 12
KeyRefresh = Callable[[bool], Sequence[bytes] | None]
"""Asked before sealing (it may answer from a recent look) and, forced to look, on an unknown
key id: the keys now (None: unchanged)."""


class SealingError(Exception):
    """A sealed value that cannot be opened: its key is not held, or it was tampered with."""


def key_id(key: bytes) -> str:
    """The short public name of a key (safe to print, log and store)."""
    return hashlib.sha256(key).hexdigest()[:8]


def new_key() -> bytes:
    return os.urandom(KEY_BYTES)


def is_sealed(value: object) -> bool:
    return isinstance(value, str) and value.startswith(PREFIX)


def sealed_under(value: str) -> str | None:
    """The key id a sealed value names (None for a value that is not sealed)."""
    if not is_sealed(value):
        return None
    return value[len(PREFIX) :].split(":", 1)[0]


class Sealer:
    """Seals and opens secrets with the keys it holds; the first key seals."""

    def __init__(self, keys: Sequence[bytes], refresh: KeyRefresh | None = None) -> None:
        self._refresh = refresh
        self._raw: dict[str, bytes] = {}
        self._use(keys)

    def _use(self, keys: Sequence[bytes]) -> None:
        """Seal with the first of `keys` from now on; a key held before and no longer given
        still opens (what this process sealed with it while another rotated)."""
        if not keys:
            raise SealingError("no sealing key is held")
        for key in keys:
            if len(key) != KEY_BYTES:
                raise SealingError(f"a sealing key is {KEY_BYTES} bytes, not {len(key)}")
        raw = {key_id(key): key for key in keys}
        raw.update({kid: key for kid, key in self._raw.items() if kid not in raw})
        self._raw = raw
        self._keys = {kid: AESGCM(key) for kid, key in raw.items()}
        self.current_id = key_id(keys[0])

    @property
    def key_ids(self) -> list[str]:
        """The ids of the keys held, the sealing one first."""
        return list(self._keys)

    def refresh(self, force: bool = False) -> None:
        """Take up the keys the key source holds now (a rotation by another process)."""
        if self._refresh is not None:
            keys = self._refresh(force)
            if keys is not None:
                self._use(keys)

    def seal(self, plaintext: bytes) -> str:
        self.refresh()
        nonce = os.urandom(NONCE_BYTES)
        kid = self.current_id
        sealed = self._keys[kid].encrypt(nonce, plaintext, kid.encode())
        return f"{PREFIX}{kid}:{base64.urlsafe_b64encode(nonce + sealed).decode().rstrip('=')}"

    def open(self, sealed: str) -> bytes:
        kid = sealed_under(sealed)
        if kid is None:
            raise SealingError("the value is not sealed")
        if kid not in self._keys:
            self.refresh(force=True)
        cipher = self._keys.get(kid)
        if cipher is None:
            raise SealingError(
                f"a secret is sealed under key {kid}, which is not held (held: "
                f"{', '.join(self._keys)}): restore the key file or DEVPROV_SECRET_KEY that has it"
            )
        body = sealed[len(PREFIX) + len(kid) + 1 :]
        try:
            data = base64.urlsafe_b64decode(body + "=" * (-len(body) % 4))
            return self._keys[kid].decrypt(data[:NONCE_BYTES], data[NONCE_BYTES:], kid.encode())
        except (InvalidTag, ValueError):
            raise SealingError(f"a secret sealed under key {kid} does not open") from None

    def seal_text(self, text: str) -> str:
        return self.seal(text.encode())

    def open_text(self, value: str) -> str:
        """The secret a stored value holds: opened if sealed, as it is if not (written before
        devprov sealed; the start-up step seals those once)."""
        return self.open(value).decode() if is_sealed(value) else value

    def needs_sealing(self, value: str) -> bool:
        """Whether a stored value is plaintext, or sealed under a key other than the current."""
        return sealed_under(value) != self.current_id

    def reseal_text(self, value: str) -> str:
        """The value sealed under the current key (opened first if it was sealed)."""
        return self.seal_text(self.open_text(value))

    def pem_passwords(self) -> list[bytes]:
        """Passwords for encrypted PEM files (which TLS must load from disk), one per key
        held, the current key's first."""
        self.refresh(force=True)
        return [
            base64.b64encode(hmac.digest(key, b"devprov pem password", "sha256"))
            for key in self._raw.values()
        ]
