"""A Node device's first minute with the official SDKs: DPS, then devprov's built-in hub.

`azure-iot-provisioning-device` provisions through a group whose custom allocation webhook turns
the payload into the initial twin; `azure-iot-device` with `azure-iot-device-mqtt` (Mqtt and
MqttWs) connects to the assigned hub, reads the twin, reports a property that `azure-iot-hub`
reads, takes desired changes made with `azure-iot-hub` and Node's `azure-iothub`, answers direct
methods invoked with both, and sends telemetry that `devprov hub messages` shows.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest
from azure.iot.hub.models import CloudToDeviceMethod, Twin, TwinProperties

from devprov import certmaker
from tests.conftest import Running, Webhook, fixed_ports
from tests.helpers import create_group, group_device_key
from tests.interop.hub_sdks import HUB, custom_allocation, link_hub, node_service, python_registry
from tests.interop.node_harness import NodeProcess
from tests.interop.test_hub_python import PAYLOAD, hub_messages
from tests.x509_fixtures import verified_ca_group

pytestmark = fixed_ports
TRANSPORTS = pytest.mark.parametrize("transport", ["mqtt", "mqttws"])


async def first_minute(
    running: Running, hub: str, device_id: str, transport: str, credentials: dict[str, Any]
) -> None:
    request = {
        "host": "localhost",
        "idScope": running.id_scope,
        "registrationId": device_id,
        "transport": transport,
        "payload": PAYLOAD,
        "reported": {"firmware": "node-3.0"},
        "telemetry": {"temperature": 19.0},
        **credentials,
    }
    device = await NodeProcess.start("hub_device.js", request, running.ca)
    try:
        provisioned = await device.until("provisioned")
        assert provisioned["result"]["assignedHub"] == HUB
        assert provisioned["result"]["payload"] == {"welcome": device_id}
        twin = (await device.until("twin"))["twin"]
        assert twin["desired"]["interval"] == PAYLOAD["interval"]
        await device.until("reported")
        await device.until("sent")

        registry = python_registry(hub, running.ca)
        service_twin = await asyncio.to_thread(registry.get_twin, device_id)
        assert service_twin.properties.reported["firmware"] == "node-3.0"
        assert service_twin.tags == {"model": PAYLOAD["modelId"]}

        desired = Twin(properties=TwinProperties(desired={"interval": 7}))
        await asyncio.to_thread(registry.update_twin, device_id, desired, service_twin.etag)
        change = await device.until("desired", patch={"interval": 7, "$version": 2})
        assert change["patch"] == {"interval": 7, "$version": 2}

        method = CloudToDeviceMethod(
            method_name="reboot", payload={"by": "python"}, response_timeout_in_seconds=10
        )
        answer = await asyncio.to_thread(registry.invoke_device_method, device_id, method)
        assert (answer.status, answer.payload) == (
            200,
            {"rebooted": True, "asked": {"by": "python"}},
        )
        answered = await asyncio.to_thread(
            node_service, hub, running.ca, "invokeMethod", deviceId=device_id,
            methodName="reboot", payload={"by": "node"},
        )  # fmt: skip
        assert answered == {"status": 200, "payload": {"rebooted": True, "asked": {"by": "node"}}}

        await asyncio.to_thread(
            node_service, hub, running.ca, "updateTwin", deviceId=device_id,
            patch={"properties": {"desired": {"stop": True}}},
        )  # fmt: skip
        await device.until("done")
    finally:
        await device.close()
    (message,) = await hub_messages(running)
    assert message["deviceId"] == device_id
    assert json.loads(message["body"]) == {"temperature": 19.0}
    assert message["properties"] == {"source": "node"}


@TRANSPORTS
async def test_symmetric_key_device(devprov: Running, webhook: Webhook, transport: str) -> None:
    hub = await link_hub(devprov, webhook)
    group = await create_group(devprov, "node-thermostats", **custom_allocation(webhook))
    key = group_device_key(group, "node-thermo-1")

    await first_minute(devprov, hub, "node-thermo-1", transport, {"symmetricKey": key})


@TRANSPORTS
async def test_x509_device(devprov: Running, webhook: Webhook, transport: str) -> None:
    hub = await link_hub(devprov, webhook)
    pki = await verified_ca_group(devprov, "node-x509-thermostats", **custom_allocation(webhook))
    issued = certmaker.device("node-thermo-x", pki.intermediate)
    x509 = {"cert": issued.pem(with_chain=True).decode(), "key": issued.key_pem().decode()}

    await first_minute(devprov, hub, "node-thermo-x", transport, {"x509": x509})
