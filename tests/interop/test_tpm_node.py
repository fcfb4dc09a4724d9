"""TPM attestation with the official Node SDK (azure-iot-security-tpm) against a software TPM."""

from __future__ import annotations

import base64
from typing import Any

from devprov.attestation.tpm import registration_id_for
from tests.conftest import Running, fixed_ports
from tests.interop.node_harness import run_node

pytestmark = fixed_ports


async def tpm_info(running: Running, port: int) -> dict[str, str]:
    outcome = await run_node("device.js", {"action": "tpm-info", "tpm": {"port": port}}, running.ca)
    assert outcome["ok"], outcome
    info: dict[str, str] = outcome["result"]
    return info


async def node_register(running: Running, registration_id: str, port: int) -> dict[str, Any]:
    request = {
        "host": "localhost",
        "idScope": running.id_scope,
        "registrationId": registration_id,
        "transport": "http",
        "tpm": {"port": port},
        "payload": {"modelId": "dtmi:tpm;1"},
    }
    result: dict[str, Any] = await run_node("device.js", request, running.ca)
    return result


async def test_enrolled_tpm_registers_and_gets_its_hub_key(
    devprov: Running, provisioned_tpm: int
) -> None:
    service = devprov.service()
    await service.link_hub("hub.example")
    info = await tpm_info(devprov, provisioned_tpm)
    registration_id = info["registrationId"]
    assert registration_id == registration_id_for(base64.b64decode(info["endorsementKey"]))
    await service.put_enrollment(
        {
            "registrationId": registration_id,
            "attestation": {"type": "tpm", "tpm": {"endorsementKey": info["endorsementKey"]}},
        }
    )

    outcome = await node_register(devprov, registration_id, provisioned_tpm)

    assert outcome["ok"], outcome
    # The TPM flow of the Node SDK resolves with the whole operation result.
    assert outcome["result"]["status"] == "assigned"
    state = outcome["result"]["registrationState"]
    assert state["assignedHub"] == "hub.example"
    assert state["deviceId"] == registration_id
    assert state["tpm"]["authenticationKey"]
    identity = await service.call("GET", f"/linkedHubs/hub.example/devices/{registration_id}")
    assert identity["authentication"]["type"] == "sas"


async def test_tpm_whose_ek_is_not_enrolled_is_refused(
    devprov: Running, provisioned_tpm: int
) -> None:
    await devprov.service().link_hub("hub.example")
    info = await tpm_info(devprov, provisioned_tpm)

    outcome = await node_register(devprov, info["registrationId"], provisioned_tpm)

    # The Node TPM client reads any answer to its first register as the challenge, so it
    # reports a malformed blob; what devprov answered is checked in tests/server/test_tpm.py.
    assert not outcome["ok"]
    assert outcome["error"]["name"] == "FormatError", outcome
    status, _, _ = await devprov.service().request(
        "GET", f"/registrations/{info['registrationId']}"
    )
    assert status == 404
