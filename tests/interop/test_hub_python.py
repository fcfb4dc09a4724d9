"""A Python device's first minute with the official SDKs: DPS, then devprov's built-in hub.

`azure-iot-device` provisions through a group whose custom allocation webhook turns the device's
payload into its initial twin, connects to the assigned hub with what provisioning gave it,
reads that twin, reports a property `azure-iot-hub` then reads, receives a desired change made
with `azure-iot-hub`, answers direct methods invoked with `azure-iot-hub` and Node's
`azure-iothub`, and sends telemetry that `devprov hub messages` shows. Symmetric key and
X.509, over MQTT and over WebSocket.
"""

from __future__ import annotations

import asyncio
import json
import threading
from pathlib import Path
from typing import Any

import pytest
from azure.iot.device import (
    X509,
    IoTHubDeviceClient,
    Message,
    MethodResponse,
    ProvisioningDeviceClient,
)
from azure.iot.hub.models import CloudToDeviceMethod, Twin, TwinProperties
from typer.testing import CliRunner

from devprov import certmaker
from devprov.cli import app
from tests.conftest import Running, Webhook, fixed_ports
from tests.helpers import create_group, group_device_key
from tests.interop.hub_sdks import (
    HUB,
    custom_allocation,
    link_hub,
    node_service,
    python_registry,
)
from tests.x509_fixtures import verified_ca_group

pytestmark = fixed_ports
PAYLOAD = {"modelId": "dtmi:contoso:thermostat;1", "interval": 30}


def first_minute(
    running: Running, hub_connection_string: str, device: dict[str, Any], websockets: bool
) -> dict[str, Any]:
    """Everything the device and the back end do, in order; what each side saw."""
    ca_text = Path(running.ca).read_text()
    seen: dict[str, Any] = {}
    if "key" in device:
        provisioning = ProvisioningDeviceClient.create_from_symmetric_key(
            provisioning_host="localhost",
            registration_id=device["id"],
            id_scope=running.id_scope,
            symmetric_key=device["key"],
            server_verification_cert=ca_text,
            websockets=websockets,
        )
    else:
        provisioning = ProvisioningDeviceClient.create_from_x509_certificate(
            provisioning_host="localhost",
            registration_id=device["id"],
            id_scope=running.id_scope,
            x509=X509(*device["files"]),  # type: ignore[no-untyped-call]
            server_verification_cert=ca_text,
            websockets=websockets,
        )
    provisioning.provisioning_payload = PAYLOAD
    result = provisioning.register()
    state = result.registration_state
    assert state is not None and isinstance(state.response_payload, str)
    seen["provisioned"] = (result.status, state.assigned_hub, json.loads(state.response_payload))

    if "key" in device:
        client = IoTHubDeviceClient.create_from_symmetric_key(
            symmetric_key=device["key"],
            hostname=state.assigned_hub,
            device_id=state.device_id,
            server_verification_cert=ca_text,
            websockets=websockets,
        )
    else:
        client = IoTHubDeviceClient.create_from_x509_certificate(
            x509=X509(*device["files"]),  # type: ignore[no-untyped-call]
            hostname=state.assigned_hub,
            device_id=state.device_id,
            server_verification_cert=ca_text,
            websockets=websockets,
        )
    patches: list[dict[str, Any]] = []
    changed = threading.Event()

    def on_patch(patch: dict[str, Any]) -> None:
        # After connecting the SDK reads the twin and hands over its desired properties as a
        # first "patch" (EnsureDesiredPropertiesStage); the service's change comes after.
        patches.append(patch)
        if patch["$version"] > 1:
            changed.set()

    def on_method(request: Any) -> None:
        answer = {"rebooted": True, "asked": request.payload}
        client.send_method_response(MethodResponse.create_from_method_request(request, 200, answer))

    client.on_twin_desired_properties_patch_received = on_patch
    client.on_method_request_received = on_method
    client.connect()
    try:
        seen["twin"] = client.get_twin()
        client.patch_twin_reported_properties({"firmware": "2.1.0", "battery": 97})
        telemetry = Message(  # type: ignore[no-untyped-call]
            json.dumps({"temperature": 21.5}),
            content_encoding="utf-8",
            content_type="application/json",
        )
        client.send_message(telemetry)

        registry = python_registry(hub_connection_string, running.ca)
        twin = registry.get_twin(state.device_id)
        seen["service_twin"] = (twin.tags, twin.properties.reported)
        registry.update_twin(
            state.device_id, Twin(properties=TwinProperties(desired={"interval": 5})), twin.etag
        )
        changed.wait(10)
        seen["patches"] = patches
        answer = registry.invoke_device_method(
            state.device_id,
            CloudToDeviceMethod(method_name="reboot", payload={"by": "python"},
                                response_timeout_in_seconds=10),
        )  # fmt: skip
        seen["python_method"] = (answer.status, answer.payload)
        seen["node_method"] = node_service(
            hub_connection_string, running.ca, "invokeMethod", deviceId=state.device_id,
            methodName="reboot", payload={"by": "node"},
        )  # fmt: skip
    finally:
        client.shutdown()
    return seen


async def hub_messages(running: Running) -> list[dict[str, Any]]:
    """`devprov hub messages HUB --json`, as an operator runs it."""
    arguments = ["hub", "messages", HUB, "--data-dir", str(running.data_dir), "--json"]
    for _ in range(50):  # the log is written in batches, shortly after the device sent
        result = await asyncio.to_thread(CliRunner().invoke, app, arguments)
        assert result.exit_code == 0, result.output
        messages = [json.loads(line) for line in result.stdout.splitlines() if line.strip()]
        if messages:
            return messages
        await asyncio.sleep(0.1)
    return []


def check(seen: dict[str, Any], registration_id: str) -> None:
    assert seen["provisioned"] == ("assigned", HUB, {"welcome": registration_id})
    twin = seen["twin"]
    assert twin["desired"]["interval"] == PAYLOAD["interval"]  # the webhook's initial twin
    assert twin["desired"]["$version"] == 1
    tags, reported = seen["service_twin"]
    assert tags == {"model": PAYLOAD["modelId"]}
    assert reported["firmware"] == "2.1.0" and reported["battery"] == 97
    assert seen["patches"][-1] == {"interval": 5, "$version": 2}  # the service's change
    assert seen["python_method"] == (200, {"rebooted": True, "asked": {"by": "python"}})
    assert seen["node_method"] == {
        "status": 200,
        "payload": {"rebooted": True, "asked": {"by": "node"}},
    }


@pytest.mark.parametrize("websockets", [False, True], ids=["mqtt", "websocket"])
async def test_symmetric_key_device(devprov: Running, webhook: Webhook, websockets: bool) -> None:
    hub = await link_hub(devprov, webhook)
    group = await create_group(devprov, "thermostats", **custom_allocation(webhook))
    device = {"id": "py-thermo-1", "key": group_device_key(group, "py-thermo-1")}

    seen = await asyncio.to_thread(first_minute, devprov, hub, device, websockets)

    check(seen, "py-thermo-1")
    (message,) = await hub_messages(devprov)
    assert message["deviceId"] == "py-thermo-1"
    assert json.loads(message["body"]) == {"temperature": 21.5}
    assert message["systemProperties"]["$.ct"] == "application/json"


@pytest.mark.parametrize("websockets", [False, True], ids=["mqtt", "websocket"])
async def test_x509_device(
    devprov: Running, webhook: Webhook, websockets: bool, tmp_path: Path
) -> None:
    hub = await link_hub(devprov, webhook)
    pki = await verified_ca_group(devprov, "x509-thermostats", **custom_allocation(webhook))
    issued = certmaker.device("py-thermo-x", pki.intermediate)
    _, chain, key = issued.save(tmp_path, "py-thermo-x")
    device = {"id": "py-thermo-x", "files": (str(chain), str(key))}

    seen = await asyncio.to_thread(first_minute, devprov, hub, device, websockets)

    check(seen, "py-thermo-x")
    identity = await asyncio.to_thread(
        node_service, hub, devprov.ca, "getDevice", deviceId="py-thermo-x"
    )
    assert identity["authentication"]["type"] == "selfSigned"
    assert len(await hub_messages(devprov)) == 1
