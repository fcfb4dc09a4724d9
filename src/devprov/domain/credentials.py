"""Certificates from a CSR (DPS's 2025-07-01-preview): what a credential policy is, which CSRs
are accepted, and the certificate devprov's issuing CA signs for a device.

A credential policy is devprov's own definition behind `credentialPolicyName`: an issuing CA held
by devprov (its key in the data dir, never in the store or on the wire), how many days an issued
certificate is valid, and a fixed profile: a client-authentication leaf whose subject CN is the
registration id, with the key the device generated.
"""

from __future__ import annotations

import base64
import binascii
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from cryptography import x509
from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from devprov.domain.certificates import common_name, load_certificate, sha256_thumbprint, to_pem
from devprov.domain.clock import now_timestamp, utc_now
from devprov.domain.errors import (
    CSR_INVALID,
    CSR_NAME_MISMATCH,
    CSR_WEAK_KEY,
    DpsError,
)

DEFAULT_VALIDITY_DAYS = 30
CA_VALIDITY_DAYS = 3650
ALLOWED_CURVES = {"secp256r1": "P-256", "secp384r1": "P-384"}
KEY_USAGES = ["digitalSignature"]
EXTENDED_KEY_USAGES = ["clientAuth"]
CLOCK_SKEW = timedelta(minutes=5)
IssuingKey = ec.EllipticCurvePrivateKey
_NO_USAGE = dict.fromkeys(
    ("content_commitment", "key_encipherment", "data_encipherment", "key_agreement"), False
)
CA_KEY_USAGE = x509.KeyUsage(
    digital_signature=True,
    key_cert_sign=True,
    crl_sign=True,
    encipher_only=False,
    decipher_only=False,
    **_NO_USAGE,
)
LEAF_KEY_USAGE = x509.KeyUsage(
    digital_signature=True,
    key_cert_sign=False,
    crl_sign=False,
    encipher_only=False,
    decipher_only=False,
    **_NO_USAGE,
)


@dataclass(frozen=True)
class CredentialPolicy:
    """A policy as the store keeps it: the issuing CAs (current first; older ones stay so that
    certificates they issued keep working until they expire) and the validity of a leaf."""

    name: str
    validity_days: int
    issuing_cas: tuple[x509.Certificate, ...]

    @property
    def current(self) -> x509.Certificate:
        return self.issuing_cas[0]

    def to_document(self, created: str | None = None) -> dict[str, Any]:
        return {
            "name": self.name,
            "validityDays": self.validity_days,
            "keyUsages": KEY_USAGES,
            "extendedKeyUsages": EXTENDED_KEY_USAGES,
            "issuingCas": [
                {"certificate": to_pem(ca), "sha256Thumbprint": sha256_thumbprint(ca)}
                for ca in self.issuing_cas
            ],
            "created": created or now_timestamp(),
            "updated": now_timestamp(),
        }

    @classmethod
    def from_document(cls, document: dict[str, Any]) -> CredentialPolicy:
        return cls(
            document["name"],
            int(document["validityDays"]),
            tuple(load_certificate(entry["certificate"]) for entry in document["issuingCas"]),
        )


@dataclass(frozen=True)
class Issuer:
    """A policy with its current CA's key: what signs a device's certificate."""

    policy: CredentialPolicy
    key: IssuingKey


def new_issuing_ca(
    policy_name: str, curve: ec.EllipticCurve | None = None
) -> tuple[x509.Certificate, IssuingKey]:
    """A self-signed CA for a policy (P-384 unless told), allowed to sign leaves only."""
    key = ec.generate_private_key(curve or ec.SECP384R1())
    name = x509.Name(
        [
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, "devprov"),
            # Each CA of a policy has a name of its own, so that a chain names its issuer
            # unambiguously once the policy has been rotated.
            x509.NameAttribute(NameOID.ORGANIZATIONAL_UNIT_NAME, secrets.token_hex(4)),
            x509.NameAttribute(NameOID.COMMON_NAME, f"devprov credential policy {policy_name}"),
        ]
    )
    start = utc_now() - CLOCK_SKEW
    certificate = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(start)
        .not_valid_after(start + timedelta(days=CA_VALIDITY_DAYS))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(CA_KEY_USAGE, critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), False)
        .sign(key, hashes.SHA384())
    )
    return certificate, key


def parse_csr(text: Any, registration_id: str) -> x509.CertificateSigningRequest:
    """A device's CSR (base64 DER PKCS#10; PEM is accepted too), or the refusal that says why
    not: not a CSR or a bad signature (400012), CN not the registration id (400013), a key that
    is not P-256 or P-384 (400014)."""
    if not isinstance(text, str) or not text.strip():
        raise DpsError(400, CSR_INVALID, "csr must be a base64 DER PKCS#10 request (a string).")
    try:
        if "-----BEGIN" in text:
            csr = x509.load_pem_x509_csr(text.encode())
        else:
            csr = x509.load_der_x509_csr(base64.b64decode(text, validate=True))
    except (ValueError, binascii.Error, UnicodeEncodeError, x509.InvalidVersion):
        raise DpsError(
            400, CSR_INVALID, "csr is not a base64 DER PKCS#10 certificate signing request."
        ) from None
    try:
        signature_valid = csr.is_signature_valid
    except (ValueError, UnsupportedAlgorithm):  # a key cryptography cannot load (tests/fuzz)
        signature_valid = False
    if not signature_valid:
        raise DpsError(
            400, CSR_INVALID, "The csr's signature does not verify with the key it carries."
        )
    try:  # parsed only when asked (tests/fuzz: x509_input)
        names = csr.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
    except (ValueError, TypeError) as error:
        raise DpsError(400, CSR_INVALID, f"The csr's subject cannot be read: {error}") from None
    name = names[0].value if len(names) == 1 else None
    if not isinstance(name, str) or name.lower() != registration_id.lower():
        raise DpsError(
            400,
            CSR_NAME_MISMATCH,
            f"The csr's subject CN {name!r} is not the registration id {registration_id!r}.",
        )
    key = csr.public_key()
    if not isinstance(key, ec.EllipticCurvePublicKey) or key.curve.name not in ALLOWED_CURVES:
        kind = key.curve.name if isinstance(key, ec.EllipticCurvePublicKey) else type(key).__name__
        raise DpsError(
            400,
            CSR_WEAK_KEY,
            f"The csr's key ({kind}) is not accepted: use an EC key on P-256 or P-384.",
        )
    return csr


def issue_certificate(
    csr: x509.CertificateSigningRequest,
    registration_id: str,
    issuer: Issuer,
    now: datetime | None = None,
) -> x509.Certificate:
    """The device's certificate: CN = registration id, the CSR's key, client authentication,
    valid for the policy's days (from a few minutes ago, for clocks that run behind)."""
    ca = issuer.policy.current
    start = (now or utc_now()) - CLOCK_SKEW
    end = min(start + timedelta(days=issuer.policy.validity_days), ca.not_valid_after_utc)
    public_key = csr.public_key()
    assert isinstance(public_key, ec.EllipticCurvePublicKey)  # parse_csr accepts nothing else
    return (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, registration_id)]))
        .issuer_name(ca.subject)
        .public_key(public_key)
        .serial_number(x509.random_serial_number())
        .not_valid_before(start)
        .not_valid_after(end)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(LEAF_KEY_USAGE, critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CLIENT_AUTH]), critical=False)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(public_key), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(issuer.key.public_key()),
            critical=False,
        )
        .sign(issuer.key, hashes.SHA384())
    )


def chain_of(leaf: x509.Certificate, issuer: Issuer) -> list[str]:
    """`issuedCertificateChain`: base64 DER, leaf first, then the issuing CA."""
    return [
        base64.b64encode(certificate.public_bytes(serialization.Encoding.DER)).decode()
        for certificate in (leaf, issuer.policy.current)
    ]


def describe_policy(policy: CredentialPolicy) -> str:
    current = policy.current
    return (
        f"{policy.name}: leaves valid {policy.validity_days} days, issuing CA"
        f" {common_name(current)!r} ({sha256_thumbprint(current)[:16]}...), valid until"
        f" {current.not_valid_after_utc:%Y-%m-%d}"
    )
