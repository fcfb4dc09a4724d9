"""Certificates as Node users handle them, with the official Node service and device clients.

The Node service SDK's users put certificates in enrollments as base64 of the PEM text
(`Buffer.from(pem).toString('base64')`), and make device certificates with the `pem` package,
which gives X.509 v1 certificates (openssl without an extension file). DPS accepts a v1
certificate as an individual enrollment's own certificate; a chain to a group needs v3.
"""

from __future__ import annotations

import base64
from typing import Any

import pytest
from cryptography import x509

from devprov import certmaker
from tests.conftest import Running, fixed_ports
from tests.interop.node_harness import run_node
from tests.interop.test_service_clients import node_service, node_value

pytestmark = fixed_ports


async def pem_certificate(running: Running, common_name: str, **issuer: str) -> dict[str, str]:
    """A certificate and key made by the `pem` package (tests/interop/node/certs.js)."""
    outcome = await run_node("certs.js", {"commonName": common_name, **issuer}, running.ca)
    assert outcome["ok"], outcome
    made: dict[str, str] = outcome["result"]
    return made


def base64_pem(pem: str) -> str:
    return base64.b64encode(pem.encode()).decode()


async def node_device(
    running: Running, registration_id: str, cert: str, key: str, transport: str
) -> dict[str, Any]:
    request = {
        "host": "localhost",
        "idScope": running.id_scope,
        "registrationId": registration_id,
        "transport": transport,
        "x509": {"cert": cert, "key": key},
    }
    result: dict[str, Any] = await run_node("device.js", request, running.ca)
    return result


def x509_enrollment(registration_id: str, certificate: str) -> dict[str, Any]:
    return {
        "registrationId": registration_id,
        "attestation": {
            "type": "x509",
            "x509": {"clientCertificates": {"primary": {"certificate": certificate}}},
        },
    }


def x509_group(group_id: str, certificate: str) -> dict[str, Any]:
    return {
        "enrollmentGroupId": group_id,
        "attestation": {
            "type": "x509",
            "x509": {"signingCertificates": {"primary": {"certificate": certificate}}},
        },
    }


@pytest.mark.parametrize("transport", ["http", "mqtt", "amqp"])
async def test_a_pem_made_v1_certificate_enrolled_as_base64_pem_registers(
    devprov: Running, transport: str
) -> None:
    await devprov.service().link_hub("hub.example")
    device = await pem_certificate(devprov, "pem-device")
    assert x509.load_pem_x509_certificate(device["cert"].encode()).version is x509.Version.v1

    (created,) = await node_service(
        devprov,
        {
            "op": "createOrUpdateIndividualEnrollment",
            "args": [x509_enrollment("pem-device", base64_pem(device["cert"]))],
        },
    )
    enrollment = node_value(created)
    info = enrollment["attestation"]["x509"]["clientCertificates"]["primary"]["info"]
    assert (info["subjectName"], info["version"]) == ("CN=pem-device", 1)

    outcome = await node_device(devprov, "pem-device", device["cert"], device["key"], transport)

    assert outcome["ok"], outcome
    assert outcome["result"]["deviceId"] == "pem-device"
    assert outcome["result"]["x509"]["certificateInfo"]["subjectName"] == "CN=pem-device"


async def test_a_group_signing_certificate_as_base64_pem_vouches_for_its_devices(
    devprov: Running,
) -> None:
    await devprov.service().link_hub("hub.example")
    root = certmaker.root_ca("node fleet root")
    member = certmaker.device("node-fleet-member", root)

    (created,) = await node_service(
        devprov,
        {
            "op": "createOrUpdateEnrollmentGroup",
            "args": [x509_group("node-fleet", base64_pem(root.pem().decode()))],
        },
    )
    node_value(created)
    outcome = await node_device(
        devprov,
        "node-fleet-member",
        member.pem(with_chain=True).decode(),
        member.key_pem().decode(),
        "http",
    )

    assert outcome["ok"], outcome
    assert outcome["result"]["x509"]["enrollmentGroupId"] == "node-fleet"


async def test_v1_certificates_in_a_group_chain_are_refused(devprov: Running) -> None:
    await devprov.service().link_hub("hub.example")
    ca = await pem_certificate(devprov, "pem-ca")
    member = await pem_certificate(
        devprov, "pem-member", serviceCertificate=ca["cert"], serviceKey=ca["key"]
    )
    (created,) = await node_service(
        devprov,
        {"op": "createOrUpdateEnrollmentGroup", "args": [x509_group("pem-fleet", ca["cert"])]},
    )
    node_value(created)

    outcome = await node_device(
        devprov, "pem-member", member["cert"] + "\n" + ca["cert"], member["key"], "http"
    )

    assert not outcome["ok"]
    assert outcome["error"]["statusCode"] == 401, outcome
    body = outcome["error"]["responseBody"]
    assert '"errorCode":401002' in body
    assert "X.509 v1: a chain to an enrollment group needs v3" in body
    status, _, _ = await devprov.service().request("GET", "/registrations/pem-member")
    assert status == 404
    # Nor is a v1 certificate a CA devprov could verify.
    status, answer, _ = await devprov.service().request(
        "PUT", "/certificates/pem-ca", {"certificate": base64_pem(ca["cert"])}
    )
    assert status == 400 and "not a CA certificate" in answer["message"]
