"""Certificates from a CSR through a running devprov: HTTPS and MQTT, refusals, and the issued
certificate attesting the device's next registration."""

from __future__ import annotations

import json
import ssl
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from cryptography.hazmat.primitives import hashes

from devprov.bench.fleet import Fleet
from devprov.bench.load import Target, connect_mqtt_device
from devprov.bench.wire import client_context
from devprov.domain.credentials import CredentialPolicy
from devprov.issuing_cas import IssuingCas
from tests.conftest import Running
from tests.csr_support import (
    PrivateKey,
    certificates,
    csr_for,
    new_key,
    pem_files,
    tampered,
    verified_path,
)
from tests.helpers import (
    create_enrollment,
    create_group,
    device_request,
    device_token,
    group_device_key,
    primary_key,
)


async def new_policy(running: Running, name: str = "fleet-certs") -> CredentialPolicy:
    return await IssuingCas(running.devprov.store, running.devprov.data_dir).create(name, 10)


def key_of(running: Running, registration_id: str, secret: str) -> str:
    return device_token(f"{running.id_scope}/registrations/{registration_id}", secret)


async def register_with_csr(
    running: Running,
    registration_id: str,
    key: str,
    csr: Any,
    api_version: str = "2025-07-01-preview",
) -> tuple[int, Any]:
    status, body, _ = await device_request(
        running,
        "PUT",
        f"/{running.id_scope}/registrations/{registration_id}/register?api-version={api_version}",
        body={"registrationId": registration_id, "csr": csr, "payload": {"m": 1}},
        authorization=key_of(running, registration_id, key),
    )
    return status, body


async def register_with_certificate(
    running: Running, registration_id: str, chain: list[str], key: PrivateKey, folder: Path
) -> tuple[int, Any]:
    """A register over HTTPS that proves itself with the issued certificate only."""
    cert_file, key_file = pem_files(chain, key, folder)
    context = ssl.create_default_context(cafile=running.ca)
    context.load_cert_chain(cert_file, key_file)
    url = (
        f"https://localhost:{running.port}/{running.id_scope}/registrations/{registration_id}"
        "/register?api-version=2021-06-01"
    )
    async with (
        aiohttp.ClientSession(connector=aiohttp.TCPConnector(ssl=context)) as http,
        http.put(url, json={"registrationId": registration_id}) as response,
    ):
        return response.status, await response.json(content_type=None)


async def test_https_csr_gets_a_chain_that_then_attests_the_device(
    devprov: Running, tmp_path: Path
) -> None:
    await devprov.service().link_hub("hub.example")
    policy = await new_policy(devprov)
    group = await create_group(devprov, "certified", credentialPolicyName="Fleet-Certs")
    device_key = group_device_key(group, "cert-1")
    csr, key = csr_for("cert-1")

    status, body = await register_with_csr(devprov, "cert-1", device_key, csr)

    assert status == 200, body
    state = body["registrationState"]
    assert state["status"] == "assigned"
    chain = state["issuedCertificateChain"]
    path = verified_path(chain)
    assert path[-1] == policy.current
    leaf = certificates(chain)[0]
    assert leaf.public_key() == key.public_key()
    # The hub identity takes the issued certificate: it is what the device will connect with.
    identity = await devprov.service().call("GET", "/linkedHubs/hub.example/devices/cert-1")
    assert identity["authentication"]["type"] == "selfSigned"
    thumbprint = identity["authentication"]["x509Thumbprint"]["primaryThumbprint"]
    assert thumbprint == leaf.fingerprint(hashes.SHA256()).hex().upper()

    again, answer = await register_with_certificate(devprov, "cert-1", chain, key, tmp_path)

    assert again == 200, answer
    assert answer["registrationState"]["x509"]["enrollmentGroupId"] == "certified"
    assert "issuedCertificateChain" not in answer["registrationState"]  # no csr, no new one


async def test_an_individual_enrollment_accepts_what_its_policy_issued(
    devprov: Running, tmp_path: Path
) -> None:
    await devprov.service().link_hub("hub.example")
    await new_policy(devprov)
    enrollment = await create_enrollment(devprov, "solo-1", credentialPolicyName="fleet-certs")
    other = await create_enrollment(devprov, "solo-2")
    csr, key = csr_for("solo-1")

    _, body = await register_with_csr(devprov, "solo-1", primary_key(enrollment), csr)
    chain = body["registrationState"]["issuedCertificateChain"]
    accepted, _ = await register_with_certificate(devprov, "solo-1", chain, key, tmp_path)
    # solo-2 has no policy: a certificate for it from the same CA would not be accepted.
    refused, reason = await register_with_certificate(
        devprov, "solo-2", chain, key, tmp_path / "other"
    )

    assert accepted == 200
    assert refused == 401
    assert reason["errorCode"] == 401002
    assert other["registrationId"] == "solo-2"


async def test_mqtt_csr_is_answered_on_the_response_topic(devprov: Running) -> None:
    await devprov.service().link_hub("hub.example")
    await new_policy(devprov)
    group = await create_group(devprov, "mqtt-certs", credentialPolicyName="fleet-certs")
    fleet = Fleet(devprov.id_scope, group["attestation"]["symmetricKey"]["primaryKey"], "m")
    target = Target(
        "localhost",
        devprov.port,
        devprov.devprov.instance.mqtt_port,
        client_context(devprov.ca),
    )
    csr, key = csr_for("m-00000001")
    client = await connect_mqtt_device(fleet, "m-00000001", target)
    try:
        body = json.dumps({"registrationId": "m-00000001", "csr": csr}).encode()
        client.publish("$dps/registrations/PUT/iotdps-register/?$rid=1", body)
        status, _, answer = await client.response()
        client.publish(
            "$dps/registrations/PUT/iotdps-register/?$rid=2",
            json.dumps({"registrationId": "m-00000001", "csr": csr_for("someone")[0]}).encode(),
        )
        refused, _, refusal = await client.response()
    finally:
        client.writer.close()

    assert status == 200, answer
    chain = answer["registrationState"]["issuedCertificateChain"]
    assert certificates(chain)[0].public_key() == key.public_key()
    verified_path(chain)
    assert refused == 400 and refusal["errorCode"] == 400013


@pytest.mark.parametrize(
    ("fields", "make_csr", "code"),
    [
        ({"credentialPolicyName": "fleet-certs"}, lambda: tampered(csr_for("r-1")[0]), 400012),
        ({"credentialPolicyName": "fleet-certs"}, lambda: csr_for("intruder")[0], 400013),
        (
            {"credentialPolicyName": "fleet-certs"},
            lambda: csr_for("r-1", new_key("rsa"))[0],
            400014,
        ),
        ({}, lambda: csr_for("r-1")[0], 400015),
        ({"credentialPolicyName": "ghost"}, lambda: csr_for("r-1")[0], 400016),
    ],
)
async def test_refusals_have_their_codes_and_record_nothing(
    devprov: Running, fields: dict[str, Any], make_csr: Any, code: int
) -> None:
    await devprov.service().link_hub("hub.example")
    await new_policy(devprov)
    enrollment = await create_enrollment(devprov, "r-1", **fields)

    status, body = await register_with_csr(devprov, "r-1", primary_key(enrollment), make_csr())

    assert status == 400
    assert body["errorCode"] == code
    missing, _, _ = await devprov.service().request("GET", "/registrations/r-1")
    assert missing == 404


@pytest.mark.parametrize("api_version", ["2019-03-31", "2021-06-01"])
async def test_shipping_api_versions_are_unchanged(devprov: Running, api_version: str) -> None:
    await devprov.service().link_hub("hub.example")
    await new_policy(devprov)
    enrollment = await create_enrollment(devprov, "old-1", credentialPolicyName="fleet-certs")
    status, body, _ = await device_request(
        devprov,
        "PUT",
        f"/{devprov.id_scope}/registrations/old-1/register?api-version={api_version}",
        body={"registrationId": "old-1", "payload": None},
        authorization=key_of(devprov, "old-1", primary_key(enrollment)),
    )
    assert status == 200
    assert set(body["registrationState"]) == {
        "registrationId", "createdDateTimeUtc", "assignedHub", "deviceId", "status",
        "substatus", "lastUpdatedDateTimeUtc", "etag",
    }  # fmt: skip


async def test_rotation_keeps_old_certificates_working(devprov: Running, tmp_path: Path) -> None:
    await devprov.service().link_hub("hub.example")
    first = await new_policy(devprov)
    enrollment = await create_enrollment(devprov, "rot-1", credentialPolicyName="fleet-certs")
    csr, key = csr_for("rot-1")
    _, before = await register_with_csr(devprov, "rot-1", primary_key(enrollment), csr)

    rotated = await IssuingCas(devprov.devprov.store, devprov.devprov.data_dir).rotate(
        "fleet-certs"
    )
    _, after = await register_with_csr(devprov, "rot-1", primary_key(enrollment), csr)
    old_chain = before["registrationState"]["issuedCertificateChain"]
    accepted, _ = await register_with_certificate(devprov, "rot-1", old_chain, key, tmp_path)

    assert verified_path(old_chain)[-1] == first.current
    assert (
        verified_path(after["registrationState"]["issuedCertificateChain"])[-1] == rotated.current
    )
    assert rotated.current != first.current
    assert accepted == 200
