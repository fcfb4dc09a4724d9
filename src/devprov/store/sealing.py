"""The one place the shared store's secrets pass through: in (`seal`) and out (`unseal`).

Every secret kept in the `deployment` table (the service policies' keys, the TLS CA's key) goes
through these two functions, so protecting them at rest is a change here only. Until then a
sealed value is the plain value behind a `plain:` marker, which says it is not protected yet
(and lets a later version tell plain values from protected ones when it reads them).
"""

from __future__ import annotations

PLAIN = "plain:"


class SealError(ValueError):
    """A sealed value this devprov cannot open."""


def seal(secret: str) -> str:
    """The form in which `secret` is written to the shared store."""
    return PLAIN + secret


def unseal(sealed: str) -> str:
    """The secret a sealed value holds."""
    if not sealed.startswith(PLAIN):
        raise SealError("a secret in the store is sealed in a way this devprov cannot open")
    return sealed[len(PLAIN) :]
