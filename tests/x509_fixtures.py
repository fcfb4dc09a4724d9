"""X.509 set-ups the tests share: a verified root CA with a group, a self-signed device, and
v1 certificates made with the openssl command line as common tooling makes them."""

from __future__ import annotations

import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cryptography import x509

from devprov import certmaker
from devprov.certmaker import Issued
from tests.conftest import Running


@dataclass
class Pki:
    root: Issued
    intermediate: Issued


async def verified_ca_group(running: Running, group_id: str, **fields: Any) -> Pki:
    """A root CA added and verified, an intermediate under it, and a group referring to the CA."""
    service = running.service()
    root = certmaker.root_ca()
    intermediate = certmaker.intermediate_ca(root)
    await service.call("PUT", "/certificates/fleet-root", {"certificate": root.pem().decode()})
    code = await service.call("POST", "/certificates/fleet-root/generateVerificationCode")
    proof = certmaker.verification(code["properties"]["verificationCode"], root)
    await service.call(
        "POST", "/certificates/fleet-root/verify", {"certificate": proof.pem().decode()}
    )
    await service.put_group(
        {
            "enrollmentGroupId": group_id,
            "attestation": {"type": "x509", "x509": {"caReferences": {"primary": "fleet-root"}}},
            **fields,
        }
    )
    return Pki(root, intermediate)


async def individual_x509(running: Running, registration_id: str, **fields: Any) -> Issued:
    """A self-signed device certificate, enrolled individually."""
    device = certmaker.device(registration_id)
    await running.service().put_enrollment(
        {
            "registrationId": registration_id,
            "attestation": {
                "type": "x509",
                "x509": {"clientCertificates": {"primary": {"certificate": device.pem().decode()}}},
            },
            **fields,
        }
    )
    return device


@dataclass(frozen=True)
class OpensslCertificate:
    """A certificate and key (PEM) as the openssl command line made them."""

    cert_pem: str
    key_pem: str

    @property
    def certificate(self) -> x509.Certificate:
        return x509.load_pem_x509_certificate(self.cert_pem.encode())


def openssl_v1(
    common_name: str, directory: Path, issuer: OpensslCertificate | None = None
) -> OpensslCertificate:
    """An X.509 v1 certificate made as the Node `pem` package makes one: `openssl req` for a
    request, then `openssl x509 -req` signed with its own key (or an issuer's) and no
    extension file, which gives v1."""
    directory.mkdir(parents=True, exist_ok=True)
    key, request, cert = (directory / f"{common_name}.{ext}" for ext in ("key", "csr", "pem"))

    def openssl(*arguments: str) -> None:
        subprocess.run(["openssl", *arguments], check=True, capture_output=True, timeout=60)

    openssl("genrsa", "-out", str(key), "2048")
    openssl("req", "-new", "-key", str(key), "-subj", f"/CN={common_name}", "-out", str(request))
    signing = ["-signkey", str(key)]
    if issuer is not None:
        issuer_cert, issuer_key = directory / "issuer.pem", directory / "issuer.key"
        issuer_cert.write_text(issuer.cert_pem)
        issuer_key.write_text(issuer.key_pem)
        signing = ["-CA", str(issuer_cert), "-CAkey", str(issuer_key), "-CAcreateserial"]
    openssl("x509", "-req", "-days", "365", "-in", str(request), *signing, "-out", str(cert))
    return OpensslCertificate(cert.read_text(), key.read_text())
