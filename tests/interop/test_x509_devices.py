"""X.509 devices with the official SDKs: Python (MQTT, WebSocket) and Node (HTTPS, MQTT)."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from azure.iot.device import X509, ProvisioningDeviceClient
from azure.iot.device.exceptions import CredentialError
from cryptography.hazmat.primitives.hashes import SHA256

from devprov import certmaker
from devprov.certmaker import Issued
from tests.conftest import Running, fixed_ports
from tests.interop.node_harness import run_node
from tests.x509_fixtures import individual_x509, verified_ca_group

pytestmark = fixed_ports


def _python_register(
    ca: str, id_scope: str, registration_id: str, files: tuple[Path, Path], websockets: bool
) -> Any:
    client = ProvisioningDeviceClient.create_from_x509_certificate(
        provisioning_host="localhost",
        registration_id=registration_id,
        id_scope=id_scope,
        x509=X509(cert_file=str(files[0]), key_file=str(files[1])),  # type: ignore[no-untyped-call]
        server_verification_cert=Path(ca).read_text(),
        websockets=websockets,
    )
    client.provisioning_payload = {"modelId": "dtmi:x509;1"}
    return client.register()


async def python_register(
    running: Running, registration_id: str, device: Issued, tmp_path: Path, *, websockets: bool
) -> Any:
    _, chain, key = device.save(tmp_path, registration_id)
    return await asyncio.to_thread(
        _python_register, running.ca, running.id_scope, registration_id, (chain, key), websockets
    )


async def node_register(
    running: Running, registration_id: str, device: Issued, transport: str
) -> dict[str, Any]:
    request = {
        "host": "localhost",
        "idScope": running.id_scope,
        "registrationId": registration_id,
        "transport": transport,
        "x509": {"cert": device.pem(with_chain=True).decode(), "key": device.key_pem().decode()},
    }
    result: dict[str, Any] = await run_node("device.js", request, running.ca)
    return result


async def test_python_individual_over_mqtt(devprov: Running, tmp_path: Path) -> None:
    await devprov.service().link_hub("hub.example")
    device = await individual_x509(devprov, "py-x509-solo")

    result = await python_register(devprov, "py-x509-solo", device, tmp_path, websockets=False)

    assert result.status == "assigned"
    assert result.registration_state.device_id == "py-x509-solo"
    identity = await devprov.service().call("GET", "/linkedHubs/hub.example/devices/py-x509-solo")
    assert identity["authentication"] == {
        "type": "selfSigned",
        "x509Thumbprint": {
            "primaryThumbprint": device.certificate.fingerprint(SHA256()).hex().upper(),
            "secondaryThumbprint": None,
        },
    }


async def test_python_group_chain_over_websocket(devprov: Running, tmp_path: Path) -> None:
    await devprov.service().link_hub("hub.example")
    pki = await verified_ca_group(devprov, "x509-fleet")
    device = certmaker.device("py-x509-member", pki.intermediate)

    result = await python_register(devprov, "py-x509-member", device, tmp_path, websockets=True)

    assert result.status == "assigned"
    record = await devprov.service().get_registration("py-x509-member")
    assert record["x509"]["enrollmentGroupId"] == "x509-fleet"
    assert record["x509"]["certificateInfo"]["subjectName"] == "CN=py-x509-member"
    assert record["x509"]["signingCertificateInfo"]["subjectName"] == "CN=devprov test root CA"


async def test_python_unverified_ca_is_refused(devprov: Running, tmp_path: Path) -> None:
    await devprov.service().link_hub("hub.example")
    root = certmaker.root_ca()
    await devprov.service().call("PUT", "/certificates/lazy", {"certificate": root.pem().decode()})
    await devprov.service().put_group(
        {
            "enrollmentGroupId": "lazy-fleet",
            "attestation": {"type": "x509", "x509": {"caReferences": {"primary": "lazy"}}},
        }
    )
    device = certmaker.device("py-x509-lazy", root)

    with pytest.raises(CredentialError):
        await python_register(devprov, "py-x509-lazy", device, tmp_path, websockets=False)


@pytest.mark.parametrize("transport", ["http", "mqtt"])
async def test_node_individual_and_group(devprov: Running, transport: str) -> None:
    await devprov.service().link_hub("hub.example")
    solo = await individual_x509(devprov, "node-x509-solo")
    pki = await verified_ca_group(devprov, "node-x509-fleet")
    member = certmaker.device("node-x509-member", pki.intermediate)

    first = await node_register(devprov, "node-x509-solo", solo, transport)
    second = await node_register(devprov, "node-x509-member", member, transport)

    assert first["ok"], first
    assert first["result"]["deviceId"] == "node-x509-solo"
    assert second["ok"], second
    assert second["result"]["x509"]["enrollmentGroupId"] == "node-x509-fleet"


async def test_node_refusals_say_what_is_wrong(devprov: Running) -> None:
    await devprov.service().link_hub("hub.example")
    pki = await verified_ca_group(devprov, "strict-fleet")
    solo = await individual_x509(devprov, "node-x509-enrolled")

    async def refusal(registration_id: str, device: Issued) -> str:
        outcome = await node_register(devprov, registration_id, device, "http")
        assert not outcome["ok"], outcome
        assert outcome["error"].get("statusCode") == 401, outcome
        body: str = outcome["error"]["responseBody"]
        assert '"errorCode":401002' in body
        return body

    three_days_ago = datetime.now(UTC) - timedelta(days=3)
    expired = certmaker.device("node-x509-old", pki.intermediate, days=1, not_before=three_days_ago)
    assert "expired on" in await refusal("node-x509-old", expired)
    impostor = certmaker.device("node-x509-impostor", pki.intermediate)
    assert "is not the registration id" in await refusal("node-x509-other", impostor)
    # Signed by a verified CA, but the individual enrollment holds another certificate.
    stranger = certmaker.device("node-x509-enrolled", pki.intermediate)
    assert stranger.certificate != solo.certificate
    assert "not the one enrolled" in await refusal("node-x509-enrolled", stranger)


async def test_node_unknown_ca_fails_the_handshake(devprov: Running) -> None:
    await devprov.service().link_hub("hub.example")
    rogue = certmaker.device("node-x509-rogue", certmaker.root_ca("rogue root"))

    outcome = await node_register(devprov, "node-x509-rogue", rogue, "http")

    # TLS 1.3 sends the server's "unknown CA" alert after the client thinks it is connected,
    # so Node reports the connection closing under it.
    assert not outcome["ok"]
    error = outcome["error"]
    assert error.get("code") == "ECONNRESET" or "unknown ca" in error["message"].lower(), error
    status, _, _ = await devprov.service().request("GET", "/registrations/node-x509-rogue")
    assert status == 404
