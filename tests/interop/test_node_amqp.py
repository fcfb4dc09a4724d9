"""The official Node device SDK over AMQP (`Amqp`, `AmqpWs`) against devprov, unmodified.

Every attestation DPS offers over AMQP: symmetric key (PLAIN), X.509 (the TLS certificate, no
SASL) and TPM (DPS's TPM SASL mechanism, against swtpm), each with a payload that goes through
the custom allocation webhook and back.
"""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from aiohttp import web

from devprov import certmaker
from devprov.certmaker import Issued
from tests.conftest import Running, Webhook, fixed_ports
from tests.helpers import (
    create_enrollment,
    create_group,
    custom_allocation,
    group_device_key,
    primary_key,
)
from tests.interop.node_harness import run_node
from tests.interop.test_tpm_node import tpm_info
from tests.x509_fixtures import individual_x509, verified_ca_group

pytestmark = fixed_ports

DEVICE_PAYLOAD = {"modelId": "dtmi:contoso:kettle;1", "site": {"floor": 3}}
HUBS = ["kettles.example", "toasters.example"]
WEBHOOK_PAYLOAD = {"firmwareUrl": "https://fw.example/kettle-3.bin"}
TRANSPORTS = pytest.mark.parametrize("transport", ["amqp", "amqpws"])


async def node_register(
    running: Running, registration_id: str | None, transport: str, **credential: Any
) -> dict[str, Any]:
    request: dict[str, Any] = {
        "host": "localhost",
        "idScope": running.id_scope,
        "transport": transport,
        "payload": DEVICE_PAYLOAD,
        **credential,
    }
    if registration_id is not None:
        request["registrationId"] = registration_id
    result: dict[str, Any] = await run_node("device.js", request, running.ca)
    return result


def x509_credential(device: Issued) -> dict[str, Any]:
    return {
        "x509": {"cert": device.pem(with_chain=True).decode(), "key": device.key_pem().decode()}
    }


def assert_round_trip(outcome: dict[str, Any], webhook: Webhook, device_id: str) -> dict[str, Any]:
    assert outcome["ok"], outcome
    state: dict[str, Any] = outcome["result"]
    state = state.get("registrationState", state)  # the TPM flow answers the whole result
    assert state["deviceId"] == device_id
    assert state["assignedHub"] == "kettles.example"
    assert state["payload"] == WEBHOOK_PAYLOAD
    assert webhook.requests[-1]["deviceRuntimeContext"]["payload"] == DEVICE_PAYLOAD
    return state


@TRANSPORTS
async def test_symmetric_key_individual(devprov: Running, webhook: Webhook, transport: str) -> None:
    allocation = await custom_allocation(devprov, webhook, HUBS, WEBHOOK_PAYLOAD)
    enrollment = await create_enrollment(devprov, "amqp-kettle-1", **allocation)

    outcome = await node_register(
        devprov, "amqp-kettle-1", transport, symmetricKey=primary_key(enrollment)
    )

    assert_round_trip(outcome, webhook, "amqp-kettle-1")
    record = await devprov.service().get_registration("amqp-kettle-1")
    assert record["payload"] == WEBHOOK_PAYLOAD


@TRANSPORTS
async def test_symmetric_key_group(devprov: Running, webhook: Webhook, transport: str) -> None:
    allocation = await custom_allocation(devprov, webhook, HUBS, WEBHOOK_PAYLOAD)
    group = await create_group(devprov, "amqp-kettles", **allocation)
    key = group_device_key(group, "amqp-kettle-2")

    outcome = await node_register(devprov, "amqp-kettle-2", transport, symmetricKey=key)

    assert_round_trip(outcome, webhook, "amqp-kettle-2")
    assert webhook.requests[0]["enrollmentGroup"]["enrollmentGroupId"] == "amqp-kettles"


@TRANSPORTS
async def test_x509_individual(devprov: Running, webhook: Webhook, transport: str) -> None:
    allocation = await custom_allocation(devprov, webhook, HUBS, WEBHOOK_PAYLOAD)
    device = await individual_x509(devprov, "amqp-x509-solo", **allocation)

    outcome = await node_register(devprov, "amqp-x509-solo", transport, **x509_credential(device))

    state = assert_round_trip(outcome, webhook, "amqp-x509-solo")
    assert state["x509"]["certificateInfo"]["subjectName"] == "CN=amqp-x509-solo"


@TRANSPORTS
async def test_x509_group_through_an_intermediate(
    devprov: Running, webhook: Webhook, transport: str
) -> None:
    allocation = await custom_allocation(devprov, webhook, HUBS, WEBHOOK_PAYLOAD)
    pki = await verified_ca_group(devprov, "amqp-x509-fleet", **allocation)
    member = certmaker.device("amqp-x509-member", pki.intermediate)

    outcome = await node_register(devprov, "amqp-x509-member", transport, **x509_credential(member))

    state = assert_round_trip(outcome, webhook, "amqp-x509-member")
    assert state["x509"]["enrollmentGroupId"] == "amqp-x509-fleet"
    assert state["x509"]["signingCertificateInfo"]["subjectName"] == "CN=devprov test root CA"


@TRANSPORTS
async def test_tpm(
    devprov: Running, webhook: Webhook, provisioned_tpm: int, transport: str
) -> None:
    service = devprov.service()
    allocation = await custom_allocation(devprov, webhook, HUBS, WEBHOOK_PAYLOAD)
    info = await tpm_info(devprov, provisioned_tpm)
    registration_id = info["registrationId"]
    await service.put_enrollment(
        {
            "registrationId": registration_id,
            "attestation": {"type": "tpm", "tpm": {"endorsementKey": info["endorsementKey"]}},
            **allocation,
        }
    )

    outcome = await node_register(
        devprov, registration_id, transport, tpm={"port": provisioned_tpm}
    )

    assert outcome["result"]["status"] == "assigned", outcome
    state = assert_round_trip(outcome, webhook, registration_id)
    # The device imported the hub key from this blob into its TPM (Node runs the TPM on it).
    assert state["tpm"]["authenticationKey"]
    identity = await service.call("GET", f"/linkedHubs/kettles.example/devices/{registration_id}")
    assert identity["authentication"]["type"] == "sas"


@TRANSPORTS
async def test_slow_webhook_makes_the_device_poll(
    devprov: Running, webhook: Webhook, transport: str
) -> None:
    settings = devprov.devprov.registrations.settings
    devprov.devprov.registrations.settings = type(settings)(
        settings.id_scope, fast_path_seconds=0.05
    )
    allocation = await custom_allocation(devprov, webhook, HUBS, WEBHOOK_PAYLOAD)
    group = await create_group(devprov, "amqp-slow", **allocation)

    async def slow(body: dict[str, Any]) -> web.StreamResponse:
        await asyncio.sleep(0.3)
        return web.json_response({"iotHubHostName": "kettles.example", "payload": WEBHOOK_PAYLOAD})

    webhook.behaviour = slow
    key = group_device_key(group, "amqp-slow-1")
    outcome = await node_register(devprov, "amqp-slow-1", transport, symmetricKey=key)

    assert_round_trip(outcome, webhook, "amqp-slow-1")


async def test_wrong_key_fails_sasl(devprov: Running) -> None:
    await devprov.service().link_hub("hub.example")
    await create_enrollment(devprov, "amqp-wrong")
    other = await create_enrollment(devprov, "amqp-other")

    outcome = await node_register(devprov, "amqp-wrong", "amqp", symmetricKey=primary_key(other))

    assert not outcome["ok"]
    status, _, _ = await devprov.service().request("GET", "/registrations/amqp-wrong")
    assert status == 404


async def test_disabled_enrollment_is_rejected_with_the_azure_error(devprov: Running) -> None:
    await devprov.service().link_hub("hub.example")
    enrollment = await create_enrollment(devprov, "amqp-off", provisioningStatus="disabled")

    outcome = await node_register(devprov, "amqp-off", "amqp", symmetricKey=primary_key(enrollment))

    assert not outcome["ok"]
    assert outcome["error"]["condition"] == "amqp:unauthorized-access", outcome
    assert '"errorCode":403001' in outcome["error"]["description"]


async def test_unknown_certificate_is_refused_at_attach(devprov: Running) -> None:
    await devprov.service().link_hub("hub.example")
    pki = await verified_ca_group(devprov, "amqp-strict")
    await individual_x509(devprov, "amqp-x509-enrolled")
    stranger = certmaker.device("amqp-x509-enrolled", pki.intermediate)

    outcome = await node_register(
        devprov, "amqp-x509-enrolled", "amqp", **x509_credential(stranger)
    )

    assert not outcome["ok"]
    assert outcome["error"].get("condition") == "amqp:unauthorized-access", outcome
    assert "not the one enrolled" in outcome["error"]["description"]
