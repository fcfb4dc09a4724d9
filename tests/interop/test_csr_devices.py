"""A certificate from a CSR, then the official Python device SDK registering with it.

azure-iot-device 2.14 cannot send a `csr` itself (its register body is only `registrationId`
and `payload`), so the first registration goes through devprov's own device client over HTTPS;
the SDK then proves itself with the issued certificate over MQTT and MQTT over WebSocket, and
connects with it to devprov's built-in hub."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest
from azure.iot.device import X509, IoTHubDeviceClient, ProvisioningDeviceClient

from devprov.client.device import DeviceClient
from devprov.issuing_cas import IssuingCas
from tests.conftest import Running, fixed_ports
from tests.csr_support import csr_for, pem_files, verified_path
from tests.helpers import create_group
from tests.interop.hub_sdks import HUB

pytestmark = fixed_ports


def _sdk_register(
    ca: str, id_scope: str, registration_id: str, files: tuple[str, str], websockets: bool
) -> Any:
    client = ProvisioningDeviceClient.create_from_x509_certificate(
        provisioning_host="localhost",
        registration_id=registration_id,
        id_scope=id_scope,
        x509=X509(cert_file=files[0], key_file=files[1]),  # type: ignore[no-untyped-call]
        server_verification_cert=Path(ca).read_text(),
        websockets=websockets,
    )
    return client.register()


@pytest.mark.parametrize("websockets", [False, True], ids=["mqtt", "websocket"])
async def test_the_python_sdk_registers_with_the_issued_certificate(
    devprov: Running, tmp_path: Path, websockets: bool
) -> None:
    await devprov.service().link_hub("hub.example")
    policy = await IssuingCas(devprov.devprov.store, devprov.devprov.data_dir).create("certs")
    group = await create_group(devprov, "issued", credentialPolicyName="certs")
    csr, key = csr_for("sdk-cert-1")

    state = await DeviceClient("localhost", devprov.id_scope, ca_file=devprov.ca).register(
        "sdk-cert-1", group_key=group["attestation"]["symmetricKey"]["primaryKey"], csr=csr
    )
    chain = state["issuedCertificateChain"]
    assert verified_path(chain)[-1] == policy.current

    files = pem_files(chain, key, tmp_path)
    result = await asyncio.to_thread(
        _sdk_register, devprov.ca, devprov.id_scope, "sdk-cert-1", files, websockets
    )

    assert result.status == "assigned"
    assert result.registration_state.assigned_hub == "hub.example"
    record = await devprov.service().get_registration("sdk-cert-1")
    assert record["x509"]["enrollmentGroupId"] == "issued"
    signer = record["x509"]["signingCertificateInfo"]["subjectName"]
    assert "CN=devprov credential policy certs" in signer


def _connect_to_hub(ca: str, hub: str, device_id: str, files: tuple[str, str]) -> Any:
    client = IoTHubDeviceClient.create_from_x509_certificate(
        x509=X509(cert_file=files[0], key_file=files[1]),  # type: ignore[no-untyped-call]
        hostname=hub,
        device_id=device_id,
        server_verification_cert=Path(ca).read_text(),
    )
    client.connect()
    try:
        client.patch_twin_reported_properties({"certificate": "issued"})
        return client.get_twin()
    finally:
        client.shutdown()


async def test_the_issued_certificate_connects_to_the_built_in_hub(
    devprov: Running, tmp_path: Path
) -> None:
    await devprov.service().link_hub(HUB)
    await IssuingCas(devprov.devprov.store, devprov.devprov.data_dir).create("hub-certs")
    group = await create_group(devprov, "to-hub", credentialPolicyName="hub-certs")
    csr, key = csr_for("hub-cert-1")
    state = await DeviceClient("localhost", devprov.id_scope, ca_file=devprov.ca).register(
        "hub-cert-1", group_key=group["attestation"]["symmetricKey"]["primaryKey"], csr=csr
    )
    assert state["assignedHub"] == HUB

    files = pem_files(state["issuedCertificateChain"], key, tmp_path)
    twin = await asyncio.to_thread(_connect_to_hub, devprov.ca, HUB, "hub-cert-1", files)

    assert twin["reported"]["certificate"] == "issued"
