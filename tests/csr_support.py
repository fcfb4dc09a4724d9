"""Making CSRs as devices do, and checking issued chains with `cryptography`'s verifier."""

from __future__ import annotations

import base64
from datetime import UTC, datetime

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import NameOID
from cryptography.x509.verification import ExtensionPolicy, PolicyBuilder, Store

PrivateKey = ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey


def new_key(kind: str = "p256") -> PrivateKey:
    if kind == "rsa":
        return rsa.generate_private_key(public_exponent=65537, key_size=2048)
    curve = {"p256": ec.SECP256R1(), "p384": ec.SECP384R1(), "p521": ec.SECP521R1()}[kind]
    return ec.generate_private_key(curve)


def csr_for(common_name: str, key: PrivateKey | None = None) -> tuple[str, PrivateKey]:
    """A base64 DER PKCS#10 request for `common_name`, and its key."""
    key = key or new_key()
    request = (
        x509.CertificateSigningRequestBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)]))
        .sign(key, hashes.SHA256())
    )
    der = request.public_bytes(serialization.Encoding.DER)
    return base64.b64encode(der).decode(), key


def tampered(csr: str) -> str:
    """The same request with one byte of its signature changed."""
    der = bytearray(base64.b64decode(csr))
    der[-3] ^= 0x01
    return base64.b64encode(bytes(der)).decode()


def certificates(chain: list[str]) -> list[x509.Certificate]:
    return [x509.load_der_x509_certificate(base64.b64decode(item)) for item in chain]


def verified_path(chain: list[str], now: datetime | None = None) -> list[x509.Certificate]:
    """The chain (leaf first) verified for client authentication up to its last certificate:
    the CA by the web PKI's rules; the leaf needs no subjectAltName (a device has no name
    but its CN)."""
    leaf, *rest = certificates(chain)
    verifier = (
        PolicyBuilder()
        .store(Store([rest[-1]]))
        .time(now or datetime.now(UTC))
        .extension_policies(
            ca_policy=ExtensionPolicy.webpki_defaults_ca(), ee_policy=ExtensionPolicy.permit_all()
        )
        .build_client_verifier()
    )
    return list(verifier.verify(leaf, rest[:-1]).chain)


def pem_files(chain: list[str], key: PrivateKey, directory: object) -> tuple[str, str]:
    """The chain and key as the PEM files an SDK loads; answers their paths."""
    from pathlib import Path

    folder = Path(str(directory))
    folder.mkdir(parents=True, exist_ok=True)
    cert_path, key_path = folder / "issued-chain.pem", folder / "issued-key.pem"
    cert_path.write_bytes(
        b"".join(c.public_bytes(serialization.Encoding.PEM) for c in certificates(chain))
    )
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return str(cert_path), str(key_path)
