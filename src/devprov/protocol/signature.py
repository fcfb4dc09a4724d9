"""Signed requests: `X-Devprov-Signature: t=UNIX_SECONDS,v1=HEX`, HEX being HMAC-SHA256(secret,
"{t}.{raw body}"), so a receiver can tell a request came from devprov and is recent (a replayed
old request has a stale `t`).

One scheme for everything devprov signs over HTTP (custom allocation webhooks, the `http` hub
connector), so one receiver-side check serves them all: here, below the layers that send (the
allocation webhook, the hub connectors) and those that receive (devprov's own webhook server)."""

from __future__ import annotations

import hashlib
import hmac
import time

HEADER = "X-Devprov-Signature"
DEFAULT_TOLERANCE_SECONDS = 300


def signature(secret: str, body: bytes, timestamp: int) -> str:
    """The hex HMAC-SHA256 of "{timestamp}." followed by the raw body."""
    message = str(timestamp).encode() + b"." + body
    return hmac.new(secret.encode(), message, hashlib.sha256).hexdigest()


def signature_header(secret: str, body: bytes, timestamp: int | None = None) -> str:
    moment = int(time.time()) if timestamp is None else timestamp
    return f"t={moment},v1={signature(secret, body, moment)}"


def verify_signature(
    body: bytes,
    header: str | None,
    secret: str,
    *,
    tolerance_seconds: int = DEFAULT_TOLERANCE_SECONDS,
    now: float | None = None,
) -> bool:
    """Whether `header` signs exactly `body` with `secret` within `tolerance_seconds` of now.

    `body` must be the request's raw bytes, as received (not re-serialized JSON). Several `v1=`
    values may appear (a secret being rotated): any one that matches is enough."""
    if not header:
        return False
    timestamp: int | None = None
    candidates: list[str] = []
    for part in header.split(","):
        name, _, value = part.strip().partition("=")
        if name == "t" and value.isdigit():
            timestamp = int(value)
        elif name == "v1":
            candidates.append(value)
    if timestamp is None or not candidates:
        return False
    moment = time.time() if now is None else now
    if abs(moment - timestamp) > tolerance_seconds:
        return False
    expected = signature(secret, body, timestamp)
    return any(hmac.compare_digest(expected, candidate) for candidate in candidates)
