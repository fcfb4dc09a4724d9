"""Console sign-in: a service policy's key or connection string buys a signed session cookie.

The cookie holds the policy name, an expiry and a random session id, signed with a secret
derived from that policy's primary key: every worker can check it without shared state, and
rotating the key ends every session it signed. Writes carry a CSRF token derived from the
session id (and must come from this origin); signing out revokes the session id in this
process and clears the cookie.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import secrets
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from devprov.domain.keys import decode_key
from devprov.domain.policies import AccessPolicy

COOKIE = "devprov_console"
SESSION_SECONDS = 8 * 3600
MAX_REVOKED = 10_000


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).decode().rstrip("=")


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


@dataclass(frozen=True)
class Session:
    policy: AccessPolicy
    session_id: str
    expires: int

    @property
    def rights(self) -> list[str]:
        return self.policy.rights

    def csrf_token(self) -> str:
        return _b64(
            hmac.new(_secret(self.policy), b"csrf|" + self.session_id.encode(), "sha256").digest()
        )


def _secret(policy: AccessPolicy) -> bytes:
    return hmac.new(
        decode_key(policy.primary_key), b"devprov console session", hashlib.sha256
    ).digest()


def _same(given: str, expected: str) -> bool:
    return hmac.compare_digest(given.encode(), expected.encode())


def policy_for(credential: str, policies: Iterable[AccessPolicy]) -> AccessPolicy | None:
    """The policy a pasted credential proves: a connection string (its key name and key), or
    a bare key of any policy."""
    text = credential.strip()
    name: str | None = None
    key = text
    if "SharedAccessKey=" in text:
        fields = dict(part.split("=", 1) for part in text.split(";") if "=" in part)
        key, name = fields.get("SharedAccessKey", ""), fields.get("SharedAccessKeyName")
    if not key:
        return None
    for policy in policies:
        if name is not None and policy.key_name.lower() != name.lower():
            continue
        if _same(key, policy.primary_key) or _same(key, policy.secondary_key):
            return policy
    return None


class Sessions:
    """Issues and checks session cookies for the instance's policies."""

    def __init__(self, policies: Callable[[], list[AccessPolicy]]) -> None:
        self.policies = policies
        self._revoked: dict[str, int] = {}

    def issue(self, policy: AccessPolicy) -> tuple[Session, str]:
        session = Session(policy, secrets.token_urlsafe(18), int(time.time()) + SESSION_SECONDS)
        payload = f"{policy.key_name}|{session.expires}|{session.session_id}".encode()
        signature = hmac.new(_secret(policy), payload, hashlib.sha256).digest()
        return session, f"{_b64(payload)}.{_b64(signature)}"

    def check(self, cookie: str | None) -> Session | None:
        if not cookie or "." not in cookie:
            return None
        encoded, _, signature = cookie.partition(".")
        try:
            payload = _unb64(encoded)
            name, expires, session_id = payload.decode().split("|")
            given = _unb64(signature)
        except (ValueError, binascii.Error, UnicodeDecodeError):
            return None
        policy = next((p for p in self.policies() if p.key_name == name), None)
        if policy is None:
            return None
        expected = hmac.new(_secret(policy), payload, hashlib.sha256).digest()
        if not hmac.compare_digest(given, expected) or int(expires) < time.time():
            return None
        if session_id in self._revoked:
            return None
        return Session(policy, session_id, int(expires))

    def revoke(self, session: Session) -> None:
        now = time.time()
        if len(self._revoked) >= MAX_REVOKED:
            self._revoked = {sid: end for sid, end in self._revoked.items() if end > now}
        self._revoked[session.session_id] = session.expires
