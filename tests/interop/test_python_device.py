"""The official Python device SDK (azure-iot-device, MQTT and MQTT over WebSocket), unmodified."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import pytest
from azure.iot.device import ProvisioningDeviceClient
from azure.iot.device.exceptions import ClientError, CredentialError, ServiceError

from tests.conftest import Running, Webhook, fixed_ports
from tests.helpers import (
    create_enrollment,
    create_group,
    custom_allocation,
    group_device_key,
    primary_key,
)

pytestmark = fixed_ports

DEVICE_PAYLOAD = {"modelId": "dtmi:contoso:kettle;1", "location": {"site": 3, "floor": [1, 2]}}
HUBS = ["kettles.example", "toasters.example"]
WEBHOOK_PAYLOAD = {"firmwareUrl": "https://fw.example/kettle-3.bin", "ticket": {"id": 9}}


def _register(
    ca: str, id_scope: str, registration_id: str, key: str, websockets: bool, payload: Any
) -> Any:
    client = ProvisioningDeviceClient.create_from_symmetric_key(
        provisioning_host="localhost",
        registration_id=registration_id,
        id_scope=id_scope,
        symmetric_key=key,
        server_verification_cert=Path(ca).read_text(),
        websockets=websockets,
    )
    if payload is not None:
        client.provisioning_payload = payload
    return client.register()


async def py_register(
    running: Running, registration_id: str, key: str, *, websockets: bool, payload: Any = None
) -> Any:
    return await asyncio.to_thread(
        _register, running.ca, running.id_scope, registration_id, key, websockets, payload
    )


@pytest.mark.parametrize("websockets", [False, True], ids=["mqtt", "websocket"])
async def test_individual_device_sends_and_receives_payload(
    devprov: Running, webhook: Webhook, websockets: bool
) -> None:
    enrollment = await create_enrollment(
        devprov, "py-kettle-1", **await custom_allocation(devprov, webhook, HUBS, WEBHOOK_PAYLOAD)
    )

    result = await py_register(
        devprov,
        "py-kettle-1",
        primary_key(enrollment),
        websockets=websockets,
        payload=DEVICE_PAYLOAD,
    )

    assert result.status == "assigned"
    state = result.registration_state
    assert state.assigned_hub == "kettles.example"
    assert state.device_id == "py-kettle-1"
    assert json.loads(state.response_payload) == WEBHOOK_PAYLOAD
    assert webhook.requests[0]["deviceRuntimeContext"]["payload"] == DEVICE_PAYLOAD


@pytest.mark.parametrize("websockets", [False, True], ids=["mqtt", "websocket"])
async def test_group_device_registers_twice(
    devprov: Running, webhook: Webhook, websockets: bool
) -> None:
    group = await create_group(
        devprov, "py-kettles", **await custom_allocation(devprov, webhook, HUBS, WEBHOOK_PAYLOAD)
    )
    key = group_device_key(group, "py-kettle-2")

    first = await py_register(
        devprov, "py-kettle-2", key, websockets=websockets, payload=DEVICE_PAYLOAD
    )
    second = await py_register(devprov, "py-kettle-2", key, websockets=websockets)

    assert first.status == second.status == "assigned"
    assert json.loads(first.registration_state.response_payload) == WEBHOOK_PAYLOAD
    assert second.registration_state.assigned_hub == "kettles.example"
    assert "payload" not in webhook.requests[1]["deviceRuntimeContext"]
    assert webhook.requests[1]["deviceRuntimeContext"]["currentIotHubHostName"] == "kettles.example"
    record = await devprov.service().get_registration("py-kettle-2")
    assert record["symmetricKey"] == {"enrollmentGroupId": "py-kettles"}


@pytest.mark.parametrize("websockets", [False, True], ids=["mqtt", "websocket"])
async def test_wrong_key_is_refused(devprov: Running, websockets: bool) -> None:
    await devprov.service().link_hub("hub.example")
    await create_enrollment(devprov, "py-wrong")
    other = await create_enrollment(devprov, "py-other")

    with pytest.raises(CredentialError):
        await py_register(devprov, "py-wrong", primary_key(other), websockets=websockets)

    status, _, _ = await devprov.service().request("GET", "/registrations/py-wrong")
    assert status == 404


async def test_disabled_enrollment_is_refused_with_its_reason(devprov: Running) -> None:
    await devprov.service().link_hub("hub.example")
    enrollment = await create_enrollment(devprov, "py-off", provisioningStatus="disabled")

    with pytest.raises(ClientError) as refused:
        await py_register(devprov, "py-off", primary_key(enrollment), websockets=False)

    assert isinstance(refused.value.__cause__, ServiceError)
    assert "403" in str(refused.value.__cause__)
