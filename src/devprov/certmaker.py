"""Test certificates the way DPS users make them: root, intermediate, device, CA proofs; and a
device's key and CSR, for a certificate devprov issues."""

from __future__ import annotations

import base64
import os
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from devprov.domain.clock import utc_now

PrivateKey = ec.EllipticCurvePrivateKey


@dataclass(frozen=True)
class Issued:
    """A certificate, its key, and the chain above it (issuer first, root last)."""

    certificate: x509.Certificate
    key: PrivateKey
    chain: tuple[x509.Certificate, ...] = ()

    def pem(self, *, with_chain: bool = False) -> bytes:
        certificates = [self.certificate, *(self.chain if with_chain else ())]
        return b"".join(c.public_bytes(serialization.Encoding.PEM) for c in certificates)

    def key_pem(self) -> bytes:
        return self.key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )

    def save(self, directory: Path, name: str) -> tuple[Path, Path, Path]:
        """Write NAME.pem, NAME-chain.pem (with the issuers, for devices) and NAME-key.pem."""
        directory.mkdir(parents=True, exist_ok=True)
        cert_path = directory / f"{name}.pem"
        chain_path = directory / f"{name}-chain.pem"
        key_path = directory / f"{name}-key.pem"
        cert_path.write_bytes(self.pem())
        chain_path.write_bytes(self.pem(with_chain=True))
        with open(os.open(key_path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600), "wb") as out:
            out.write(self.key_pem())
        return cert_path, chain_path, key_path

    @classmethod
    def load(cls, directory: Path, name: str) -> Issued:
        """Read back what `save` wrote (the chain file holds the issuers)."""
        chain = x509.load_pem_x509_certificates((directory / f"{name}-chain.pem").read_bytes())
        key = serialization.load_pem_private_key((directory / f"{name}-key.pem").read_bytes(), None)
        if not isinstance(key, ec.EllipticCurvePrivateKey):
            raise ValueError(f"{name}-key.pem is not an EC key")
        return cls(chain[0], key, tuple(chain[1:]))


def _build(
    common_name: str,
    issuer: Issued | None,
    *,
    ca: bool,
    days: int,
    not_before: datetime | None = None,
) -> Issued:
    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])
    start = not_before or utc_now() - timedelta(minutes=5)
    signer_key = issuer.key if issuer else key
    builder = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer.certificate.subject if issuer else subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(start)
        .not_valid_after(start + timedelta(days=days))
        .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(signer_key.public_key()), False
        )
    )
    if ca:
        builder = builder.add_extension(
            x509.KeyUsage(
                digital_signature=True, key_cert_sign=True, crl_sign=True,
                content_commitment=False, key_encipherment=False, data_encipherment=False,
                key_agreement=False, encipher_only=False, decipher_only=False,
            ),
            critical=True,
        )  # fmt: skip
    else:
        builder = builder.add_extension(
            x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CLIENT_AUTH]), critical=False
        )
    certificate = builder.sign(signer_key, hashes.SHA256())
    chain = (issuer.certificate, *issuer.chain) if issuer else ()
    return Issued(certificate, key, chain)


def root_ca(common_name: str = "devprov test root CA", days: int = 365) -> Issued:
    return _build(common_name, None, ca=True, days=days)


def intermediate_ca(issuer: Issued, common_name: str = "devprov test intermediate CA") -> Issued:
    return _build(common_name, issuer, ca=True, days=365)


def device(
    registration_id: str,
    issuer: Issued | None = None,
    *,
    days: int = 30,
    not_before: datetime | None = None,
) -> Issued:
    """A device certificate whose CN is the registration id; self-signed without an issuer."""
    return _build(registration_id, issuer, ca=False, days=days, not_before=not_before)


def verification(code: str, ca: Issued) -> Issued:
    """The proof of possession DPS asks for: CN = the verification code, signed by the CA."""
    return _build(code, ca, ca=False, days=1)


@dataclass(frozen=True)
class CertificateRequest:
    """A device's new key and its CSR (base64 DER, CN = the registration id)."""

    key: PrivateKey
    csr: str

    def save(self, directory: Path, name: str, chain: list[str]) -> tuple[Path, Path]:
        """Write the issued chain (base64 DER, leaf first) as NAME-chain.pem, the key as
        NAME-key.pem (0600)."""
        certificates = [x509.load_der_x509_certificate(base64.b64decode(c)) for c in chain]
        issued = Issued(certificates[0], self.key, tuple(certificates[1:]))
        _, chain_path, key_path = issued.save(directory, name)
        return chain_path, key_path


def certificate_request(registration_id: str) -> CertificateRequest:
    key = ec.generate_private_key(ec.SECP256R1())
    request = (
        x509.CertificateSigningRequestBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, registration_id)]))
        .sign(key, hashes.SHA256())
    )
    der = request.public_bytes(serialization.Encoding.DER)
    return CertificateRequest(key, base64.b64encode(der).decode())
