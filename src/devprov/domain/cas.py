"""Verified CAs: adding a CA, the proof-of-possession code, and checking the proof."""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from typing import Any

from cryptography import x509
from cryptography.exceptions import InvalidSignature

from devprov.domain.certificates import (
    certificate_info,
    common_name,
    load_certificate,
    sha1_thumbprint,
    to_pem,
)
from devprov.domain.clock import format_timestamp, new_etag, now_timestamp, utc_now
from devprov.domain.errors import CA_PROOF_FAILED as PROOF_FAILED
from devprov.domain.errors import bad_request


@dataclass(frozen=True)
class KnownCa:
    """A CA added to devprov; only a verified one may vouch for an enrollment group."""

    name: str
    certificate: x509.Certificate
    verified: bool


def new_ca_record(
    name: str, certificate_text: str, existing: dict[str, Any] | None
) -> dict[str, Any]:
    """A CA as devprov keeps it (shaped like Azure's CertificateResponse). It is unverified
    until its owner proves possession of its key; replacing the certificate unverifies it."""
    certificate = load_certificate(certificate_text)
    basic = _basic_constraints(certificate)
    if basic is None or not basic.ca:
        raise bad_request(f"The certificate for CA {name!r} is not a CA certificate.")
    pem = to_pem(certificate)
    same = existing is not None and existing["properties"]["certificate"] == pem
    now = now_timestamp()
    return {
        "name": name,
        "etag": new_etag(),
        "properties": {
            "subject": certificate.subject.rfc4514_string(),
            "expiry": format_timestamp(certificate.not_valid_after_utc),
            "thumbprint": sha1_thumbprint(certificate),
            "isVerified": bool(same and existing and existing["properties"]["isVerified"]),
            "certificate": pem,
            "info": certificate_info(certificate),
            "created": existing["properties"]["created"] if existing else now,
            "updated": now,
        },
    }


def with_verification_code(record: dict[str, Any]) -> dict[str, Any]:
    """Hand out a fresh code; the owner signs a certificate whose CN is that code."""
    properties = dict(record["properties"], verificationCode=secrets.token_hex(16).upper())
    return {**record, "etag": new_etag(), "properties": properties}


def verified(record: dict[str, Any], proof_text: str) -> dict[str, Any]:
    """Accept the proof: CN equal to the code handed out, signed by the CA's key, valid now."""
    properties = record["properties"]
    code = properties.get("verificationCode")
    if not code:
        raise bad_request(
            f"No verification code was generated for CA {record['name']!r}: ask for one first.",
            PROOF_FAILED,
        )
    proof = load_certificate(proof_text)
    if (common_name(proof) or "").upper() != code.upper():
        raise bad_request(
            f"The proof's subject CN {common_name(proof)!r} is not the verification code.",
            PROOF_FAILED,
        )
    ca = load_certificate(properties["certificate"])
    try:
        proof.verify_directly_issued_by(ca)
    except (InvalidSignature, ValueError, TypeError):
        raise bad_request(
            "The proof is not signed by the CA's private key.", PROOF_FAILED
        ) from None
    now = utc_now()
    if not proof.not_valid_before_utc <= now <= proof.not_valid_after_utc:
        raise bad_request("The proof certificate is not valid now.", PROOF_FAILED)
    verified_properties = {
        key: value for key, value in properties.items() if key != "verificationCode"
    }
    verified_properties.update(isVerified=True, updated=now_timestamp())
    return {**record, "etag": new_etag(), "properties": verified_properties}


def _basic_constraints(certificate: x509.Certificate) -> x509.BasicConstraints | None:
    try:
        value = certificate.extensions.get_extension_for_class(x509.BasicConstraints).value
    except x509.ExtensionNotFound:
        return None
    return value
