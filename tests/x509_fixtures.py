"""X.509 set-ups the tests share: a verified root CA with a group, a self-signed device."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

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
