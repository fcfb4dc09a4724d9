"""Certificates from a CSR: which requests are refused and why, and what is issued."""

from __future__ import annotations

import base64

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID

from devprov.domain.credentials import (
    CredentialPolicy,
    Issuer,
    chain_of,
    issue_certificate,
    new_issuing_ca,
    parse_csr,
)
from devprov.domain.errors import DpsError
from tests.csr_support import csr_for, new_key, tampered, verified_path


def issuer(days: int = 30) -> Issuer:
    certificate, key = new_issuing_ca("fleet")
    return Issuer(CredentialPolicy("fleet", days, (certificate,)), key)


@pytest.mark.parametrize("kind", ["p256", "p384"])
def test_a_good_csr_gets_a_client_certificate_for_its_key(kind: str) -> None:
    csr, key = csr_for("Dev-1", new_key(kind))
    signer = issuer(days=7)

    leaf = issue_certificate(parse_csr(csr, "dev-1"), "dev-1", signer)
    chain = chain_of(leaf, signer)

    path = verified_path(chain)
    assert path[0] == leaf and path[-1] == signer.policy.current
    assert leaf.public_key() == key.public_key()
    assert leaf.subject.rfc4514_string() == "CN=dev-1"
    usage = leaf.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    assert list(usage) == [ExtendedKeyUsageOID.CLIENT_AUTH]
    assert not leaf.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
    lifetime = leaf.not_valid_after_utc - leaf.not_valid_before_utc
    assert lifetime.days == 7
    assert base64.b64decode(chain[1]) == signer.policy.current.public_bytes(
        serialization.Encoding.DER
    )


def test_pem_is_accepted_too() -> None:
    key = new_key()
    csr, _ = csr_for("dev-1", key)
    pem = x509.load_der_x509_csr(base64.b64decode(csr)).public_bytes(serialization.Encoding.PEM)
    assert parse_csr(pem.decode(), "dev-1").public_key() == key.public_key()


@pytest.mark.parametrize(
    ("make", "code", "words"),
    [
        (lambda: "not base64 at all!", 400012, "not a base64 DER PKCS#10"),
        (lambda: base64.b64encode(b"\x30\x03\x02\x01\x00").decode(), 400012, "not a base64"),
        (lambda: 7, 400012, "must be"),
        (lambda: tampered(csr_for("dev-1")[0]), 400012, "signature does not verify"),
        (lambda: csr_for("someone-else")[0], 400013, "'someone-else' is not the registration"),
        (lambda: csr_for("dev-1", new_key("rsa"))[0], 400014, "RSAPublicKey"),
        (lambda: csr_for("dev-1", new_key("p521"))[0], 400014, "secp521r1"),
    ],
)
def test_refusals_say_what_is_wrong(make: object, code: int, words: str) -> None:
    with pytest.raises(DpsError) as refused:
        parse_csr(make(), "dev-1")  # type: ignore[operator]
    assert refused.value.status == 400
    assert refused.value.error_code == code
    assert words in refused.value.message


def test_an_issued_certificate_never_outlives_its_ca() -> None:
    certificate, key = new_issuing_ca("short", ec.SECP256R1())
    signer = Issuer(CredentialPolicy("short", 100_000, (certificate,)), key)
    leaf = issue_certificate(parse_csr(csr_for("d")[0], "d"), "d", signer)
    assert leaf.not_valid_after_utc <= certificate.not_valid_after_utc


def test_a_policy_document_round_trips() -> None:
    signer = issuer()
    document = signer.policy.to_document()
    assert document["issuingCas"][0]["certificate"].startswith("-----BEGIN CERTIFICATE")
    assert CredentialPolicy.from_document(document) == signer.policy
