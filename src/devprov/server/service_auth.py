"""Service API authentication: DPS shared access policies and the rights each operation needs."""

from __future__ import annotations

from urllib.parse import unquote, urlsplit

from devprov.attestation.sas import (
    DEFAULT_MAX_LIFETIME_SECONDS,
    check_expiry,
    parse_sas,
    signature_matches,
)
from devprov.domain.errors import PERMISSION_DENIED, DpsError, unauthorized
from devprov.domain.keys import decode_key
from devprov.domain.policies import PolicyLookup


def authorize(
    policy_of: PolicyLookup,
    authorization: str | None,
    right: str,
    known_hosts: set[str],
    max_lifetime: float = DEFAULT_MAX_LIFETIME_SECONDS,
) -> str:
    """Check a service token and that its policy grants `right`; return the policy name.

    The token's `sr` is the service host name (clients sign `host` or `host:port`, some with a
    scheme); it must name this server, compared without case, port or scheme.
    """
    token = parse_sas(authorization)
    if not token.key_name:
        raise unauthorized("The service SharedAccessSignature must name its policy (skn).")
    policy = policy_of(token.key_name)
    if policy is None:
        raise unauthorized(f"There is no shared access policy named {token.key_name!r}.")
    if _host_of(token.resource_as_sent) not in known_hosts:
        raise unauthorized(
            f"The SharedAccessSignature is for another service ({token.resource!r})."
        )
    keys = [decode_key(policy.primary_key), decode_key(policy.secondary_key)]
    if not signature_matches(token, keys):
        raise unauthorized("The SharedAccessSignature is not signed with the policy's key.")
    check_expiry(token, max_lifetime=max_lifetime)
    if right not in policy.rights:
        raise DpsError(
            403,
            PERMISSION_DENIED,
            f"The policy {policy.key_name!r} does not grant {right}, which this operation needs.",
        )
    return policy.key_name


def _host_of(resource: str) -> str:
    text = unquote(resource).strip().lower()
    if "://" not in text:
        text = "//" + text
    return (urlsplit(text).hostname or "").strip("[]")
