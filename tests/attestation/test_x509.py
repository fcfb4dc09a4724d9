"""X.509 attestation (devprov.attestation.x509) of v1 certificates, made as common tooling
(the Node `pem` package, i.e. the openssl command line) makes them."""

from __future__ import annotations

import base64
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding

from devprov import certmaker
from devprov.attestation.x509 import attest_x509
from devprov.domain.certificates import load_certificate
from devprov.domain.errors import INVALID_CERTIFICATE, DpsError
from devprov.domain.models import EnrollmentGroup, IndividualEnrollment
from tests.x509_fixtures import OpensslCertificate, openssl_v1


def individual(registration_id: str, certificate_text: str) -> IndividualEnrollment:
    return IndividualEnrollment.model_validate(
        {
            "registrationId": registration_id,
            "attestation": {
                "type": "x509",
                "x509": {"clientCertificates": {"primary": {"certificate": certificate_text}}},
            },
        }
    )


def group(group_id: str, signing_text: str) -> EnrollmentGroup:
    return EnrollmentGroup.model_validate(
        {
            "enrollmentGroupId": group_id,
            "attestation": {
                "type": "x509",
                "x509": {"signingCertificates": {"primary": {"certificate": signing_text}}},
            },
        }
    )


def test_a_v1_certificate_is_an_individual_enrollment_s_own(tmp_path: Path) -> None:
    device = openssl_v1("v1-dev", tmp_path)
    assert device.certificate.version is x509.Version.v1
    enrolled = base64.b64encode(device.cert_pem.encode()).decode()  # as Node users send it

    attested = attest_x509("v1-dev", [device.certificate], individual("v1-dev", enrolled), [], {})

    info = attested.registration_attestation["x509"]["certificateInfo"]
    assert info["subjectName"] == "CN=v1-dev" and info["version"] == 1


def test_another_v1_certificate_with_the_same_name_is_refused(tmp_path: Path) -> None:
    enrolled = openssl_v1("v1-dev", tmp_path / "a")
    other = openssl_v1("v1-dev", tmp_path / "b")

    with pytest.raises(DpsError, match="not the one enrolled") as refused:
        attest_x509("v1-dev", [other.certificate], individual("v1-dev", enrolled.cert_pem), [], {})
    assert refused.value.error_code == INVALID_CERTIFICATE


def test_a_v1_certificate_in_a_group_chain_is_refused(tmp_path: Path) -> None:
    v1_ca = openssl_v1("v1-ca", tmp_path / "ca")
    member = openssl_v1("v1-member", tmp_path / "member", issuer=v1_ca)
    fleet = group("v1-fleet", v1_ca.cert_pem)

    with pytest.raises(DpsError, match=r"X\.509 v1: a chain to an enrollment group needs v3"):
        attest_x509("v1-member", [member.certificate, v1_ca.certificate], None, [fleet], {})


def test_a_v1_device_under_a_v3_ca_is_refused(tmp_path: Path) -> None:
    root = certmaker.root_ca()
    key_pem = root.key_pem().decode()
    issuer_pem = root.pem().decode()
    member = openssl_v1("v1-under-v3", tmp_path, issuer=OpensslCertificate(issuer_pem, key_pem))
    fleet = group("v3-fleet", issuer_pem)

    with pytest.raises(DpsError, match=r"'v1-under-v3' is X\.509 v1") as refused:
        attest_x509("v1-under-v3", [member.certificate], None, [fleet], {})
    assert refused.value.error_code == INVALID_CERTIFICATE


@pytest.mark.parametrize("form", ["pem", "base64 der", "base64 pem", "base64 pem in lines"])
def test_a_certificate_is_taken_in_every_form_users_send(form: str) -> None:
    certificate = certmaker.device("forms").certificate
    pem = certificate.public_bytes(Encoding.PEM)
    text = {
        "pem": pem.decode(),
        "base64 der": base64.b64encode(certificate.public_bytes(Encoding.DER)).decode(),
        "base64 pem": base64.b64encode(pem).decode(),
        "base64 pem in lines": base64.encodebytes(pem).decode(),
    }[form]

    assert load_certificate(text) == certificate


@pytest.mark.parametrize("text", ["", "not base64!", base64.b64encode(b"neither").decode()])
def test_anything_else_is_refused_with_what_is_accepted(text: str) -> None:
    with pytest.raises(DpsError, match="neither PEM, base64 DER nor base64 PEM"):
        load_certificate(text)
