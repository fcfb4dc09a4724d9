"""Facts about X.509 certificates: loading them as DPS receives them, names, thumbprints, info."""

from __future__ import annotations

import base64
import binascii
from typing import Any

from cryptography import x509
from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.x509.oid import NameOID

from devprov.domain.clock import format_timestamp
from devprov.domain.errors import bad_request


def load_certificate(text: str) -> x509.Certificate:
    """A certificate given as PEM, as base64 DER, or as base64 of the PEM text (what users of
    the Node service SDK send: `Buffer.from(pem).toString('base64')`); all appear in DPS
    enrollments."""
    try:
        if "-----BEGIN" in text:
            certificate = x509.load_pem_x509_certificate(text.encode())
        else:
            raw = base64.b64decode("".join(text.split()), validate=True)
            if raw.lstrip().startswith(b"-----BEGIN"):
                certificate = x509.load_pem_x509_certificate(raw)
            else:
                certificate = x509.load_der_x509_certificate(raw)
    except (ValueError, binascii.Error, UnicodeEncodeError, x509.InvalidVersion):
        raise bad_request("The certificate is neither PEM, base64 DER nor base64 PEM.") from None
    try:
        _read_every_field(certificate)
    except (ValueError, TypeError, x509.InvalidVersion, UnsupportedAlgorithm) as error:
        raise bad_request(f"The certificate cannot be read: {error}") from None
    return certificate


def _read_every_field(certificate: x509.Certificate) -> None:
    """cryptography parses a certificate's fields only when asked: ask for each now, so a
    malformed one is refused here and not found later, mid-request (tests/fuzz: x509_input)."""
    certificate.subject.rfc4514_string()
    certificate.issuer.rfc4514_string()
    _ = certificate.version, certificate.serial_number, certificate.signature_hash_algorithm
    _ = certificate.not_valid_before_utc, certificate.not_valid_after_utc
    _ = list(certificate.extensions)
    certificate.public_key()


def to_pem(cert: x509.Certificate) -> str:
    return cert.public_bytes(serialization.Encoding.PEM).decode()


def common_name(cert: x509.Certificate) -> str | None:
    names = cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
    value = names[0].value if names else None
    return value if isinstance(value, str) else None


def sha1_thumbprint(cert: x509.Certificate) -> str:
    return cert.fingerprint(hashes.SHA1()).hex().upper()


def sha256_thumbprint(cert: x509.Certificate) -> str:
    return cert.fingerprint(hashes.SHA256()).hex().upper()


def certificate_info(cert: x509.Certificate) -> dict[str, Any]:
    """DPS's X509CertificateInfo."""
    return {
        "subjectName": cert.subject.rfc4514_string(),
        "sha1Thumbprint": sha1_thumbprint(cert),
        "sha256Thumbprint": sha256_thumbprint(cert),
        "issuerName": cert.issuer.rfc4514_string(),
        "notBeforeUtc": format_timestamp(cert.not_valid_before_utc),
        "notAfterUtc": format_timestamp(cert.not_valid_after_utc),
        "serialNumber": format(cert.serial_number, "X"),
        "version": cert.version.value + 1,
    }
