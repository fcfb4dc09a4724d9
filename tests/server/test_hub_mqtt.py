"""The built-in hub's MQTT side against raw clients: who may connect, and only to its own topics.

The official SDKs' happy paths are in tests/interop/test_hub_*.py; here each refusal is checked
on the wire, with what the hub wrote (or did not) afterwards.
"""

from __future__ import annotations

import asyncio
import base64
import json
import ssl
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import pytest

from devprov.bench.wire import MqttClient, WireError
from devprov.domain.keys import generate_key
from devprov.protocol import mqtt
from devprov.store.hub_messages import read_messages
from tests.conftest import Running
from tests.helpers import device_token

HUB = "hub-1.devprov.test"


@dataclass
class Hub:
    running: Running

    async def add_device(self, device_id: str, **fields: Any) -> str:
        key = generate_key()
        body = {"authentication": {"type": "sas", "symmetricKey": {"primaryKey": key}}, **fields}
        await self.rest("PUT", f"/devices/{device_id}", body)
        return key

    async def rest(self, method: str, path: str, body: Any = None, **headers: str) -> Any:
        from tests.server.test_hub_api import hub_request

        status, answer, _ = await hub_request(self.running, method, path, body, headers=headers)
        assert status < 300, (status, answer)
        return answer


@pytest.fixture
async def hub(devprov: Running) -> AsyncIterator[Hub]:
    await devprov.service().link_hub(HUB)
    yield Hub(devprov)


def token(device_id: str, key: str, *, ttl: int = 3600, resource: str | None = None) -> bytes:
    text = device_token(resource or f"{HUB}/devices/{device_id}", key, ttl=ttl, style="python")
    return text.removesuffix("&skn=registration").encode()


async def connect(
    running: Running, device_id: str, password: bytes | None, *, client_id: str | None = None
) -> tuple[MqttClient, int]:
    context = ssl.create_default_context(cafile=running.ca)
    port = running.devprov.instance.mqtt_port
    reader, writer = await asyncio.open_connection(
        "127.0.0.1", port, ssl=context, server_hostname="localhost"
    )
    client = MqttClient(reader, writer)
    username = f"{HUB}/{device_id}/?api-version=2021-04-12&DeviceClientType=raw-test"
    client.send(mqtt.Connect(client_id or device_id, username, password, keep_alive=60))
    connack = await asyncio.wait_for(client.packet(), 10)
    assert isinstance(connack, mqtt.ConnAck)
    return client, connack.return_code


async def closed(client: MqttClient) -> bool:
    """Whether the server closes the connection (reading nothing else first)."""
    try:
        packet = await asyncio.wait_for(client.packet(), 10)
    except WireError:
        return True
    raise AssertionError(f"the hub sent {packet} instead of closing")


async def test_the_device_key_connects(hub: Hub) -> None:
    key = await hub.add_device("dev-1")
    client, code = await connect(hub.running, "dev-1", token("dev-1", key))
    assert code == mqtt.ACCEPTED
    client.writer.close()


@pytest.mark.parametrize(
    "case", ["wrong key", "expired", "other device", "no password", "unknown device"]
)
async def test_credentials_that_are_not_the_devices_get_connack_5(hub: Hub, case: str) -> None:
    key = await hub.add_device("dev-1")
    other = await hub.add_device("dev-2")
    password = {
        "wrong key": token("dev-1", generate_key()),
        "expired": token("dev-1", key, ttl=-10),
        "other device": token("dev-2", other),
        "no password": None,
        "unknown device": token("ghost", key),
    }[case]
    device_id = "ghost" if case == "unknown device" else "dev-1"
    _, code = await connect(hub.running, device_id, password)
    assert code == mqtt.NOT_AUTHORIZED


async def test_a_module_identity_is_refused(hub: Hub) -> None:
    key = await hub.add_device("dev-1")
    _, code = await connect(hub.running, "dev-1", token("dev-1", key), client_id="dev-1/mod")
    assert code in (mqtt.BAD_USERNAME_OR_PASSWORD, mqtt.NOT_AUTHORIZED)


async def test_subscribing_to_another_devices_topics_closes_the_connection(hub: Hub) -> None:
    key = await hub.add_device("dev-1")
    client, _ = await connect(hub.running, "dev-1", token("dev-1", key))
    client.send(mqtt.Subscribe(1, (("devices/dev-2/messages/devicebound/#", 1),)))
    assert await closed(client)


@pytest.mark.parametrize(
    "topic",
    [
        "devices/dev-2/messages/events/",
        "$iothub/twin/PATCH/properties/desired/?$rid=1",
        "$dps/registrations/PUT/iotdps-register/?$rid=1",
    ],
)
async def test_publishing_outside_its_own_topics_closes_and_delivers_nothing(
    hub: Hub, topic: str
) -> None:
    key = await hub.add_device("dev-1")
    client, _ = await connect(hub.running, "dev-1", token("dev-1", key))
    client.send(mqtt.Publish(topic, b'{"evil": true}', qos=0))
    assert await closed(client)
    await asyncio.sleep(0.3)
    page = await read_messages(hub.running.devprov.store, HUB)
    assert page.messages == [] and page.received == 0


@pytest.mark.parametrize("change", ["delete", "disable"])
async def test_a_device_deleted_or_disabled_is_dropped_and_refused(hub: Hub, change: str) -> None:
    key = await hub.add_device("dev-1")
    client, _ = await connect(hub.running, "dev-1", token("dev-1", key))
    if change == "delete":
        await hub.rest("DELETE", "/devices/dev-1", **{"If-Match": '"*"'})
    else:
        device = await hub.rest("GET", "/devices/dev-1")
        await hub.rest(
            "PUT", "/devices/dev-1", {**device, "status": "disabled"}, **{"If-Match": '"*"'}
        )
    assert await closed(client)
    _, code = await connect(hub.running, "dev-1", token("dev-1", key))
    assert code == mqtt.NOT_AUTHORIZED


async def test_a_second_connection_of_a_device_drops_the_first(hub: Hub) -> None:
    key = await hub.add_device("dev-1")
    first, _ = await connect(hub.running, "dev-1", token("dev-1", key))
    second, code = await connect(hub.running, "dev-1", token("dev-1", key))
    assert code == mqtt.ACCEPTED
    assert await closed(first)
    second.writer.close()


async def test_the_connection_ends_when_its_token_expires(hub: Hub) -> None:
    key = await hub.add_device("dev-1")
    client, code = await connect(hub.running, "dev-1", token("dev-1", key, ttl=2))
    assert code == mqtt.ACCEPTED
    started = time.monotonic()
    assert await closed(client)
    assert time.monotonic() - started > 0.5  # closed by the expiry, not at once


def nested(depth: int) -> dict[str, Any]:
    value: dict[str, Any] = {"leaf": 1}
    for level in range(depth):
        value = {f"k{level}": value}
    return value


async def twin_request(client: MqttClient, topic: str, payload: bytes) -> tuple[str, Any]:
    client.send(mqtt.Publish(topic, payload, qos=0))
    while True:
        packet = await asyncio.wait_for(client.packet(), 10)
        if isinstance(packet, mqtt.Publish):
            if packet.qos:
                client.send(mqtt.PubAck(packet.packet_id or 0))
            return packet.topic, json.loads(packet.payload) if packet.payload else None


@pytest.mark.parametrize(
    ("patch", "words"),
    [
        (b"{not json", "not valid JSON"),
        (b'{"a.b": 1}', "may not contain '.'"),
        (b'{"$secret": 1}', "$"),
        (json.dumps(nested(11)).encode(), "deep"),
        (b"[1, 2]", "JSON object"),
    ],
)
async def test_a_malformed_reported_patch_is_refused_and_changes_nothing(
    hub: Hub, patch: bytes, words: str
) -> None:
    key = await hub.add_device("dev-1")
    client, _ = await connect(hub.running, "dev-1", token("dev-1", key))
    client.send(mqtt.Subscribe(1, (("$iothub/twin/res/#", 0),)))
    assert isinstance(await client.packet(), mqtt.SubAck)

    topic, body = await twin_request(
        client, "$iothub/twin/PATCH/properties/reported/?$rid=r1", patch
    )

    assert topic.startswith("$iothub/twin/res/400/?$rid=r1")
    assert body["errorCode"] == 400004 and words in body["message"], body
    topic, twin = await twin_request(client, "$iothub/twin/GET/?$rid=r2", b" ")
    assert topic == "$iothub/twin/res/200/?$rid=r2"
    assert twin["reported"] == {"$version": 1}


async def test_reported_patch_answers_204_with_the_new_version(hub: Hub) -> None:
    key = await hub.add_device("dev-1")
    client, _ = await connect(hub.running, "dev-1", token("dev-1", key))
    topic, body = await twin_request(
        client, "$iothub/twin/PATCH/properties/reported/?$rid=x-1", b'{"fw": "1.0"}'
    )
    assert (topic, body) == ("$iothub/twin/res/204/?$rid=x-1&$version=2", None)


async def test_a_tpm_device_connects_with_the_key_dps_delivered(devprov: Running) -> None:
    from tests.server.test_tpm_device import Device, enroll

    device = Device()
    await enroll(devprov, device)  # links hub.example, a built-in hub
    _, challenge, _ = await device.put(devprov)
    registration_key = device.open(challenge["authenticationKey"])
    _, body, _ = await device.put(devprov, device.token(devprov, registration_key))
    state = body["registrationState"]
    hub_key = device.open(state["tpm"]["authenticationKey"])  # as the TPM imports it

    hub, device_id = state["assignedHub"], state["deviceId"]
    password = device_token(
        f"{hub}/devices/{device_id}", base64.b64encode(hub_key).decode(), style="python"
    )
    context = ssl.create_default_context(cafile=devprov.ca)
    reader, writer = await asyncio.open_connection(
        "127.0.0.1", devprov.devprov.instance.mqtt_port, ssl=context, server_hostname="localhost"
    )
    client = MqttClient(reader, writer)
    client.send(mqtt.Connect(device_id, f"{hub}/{device_id}/?api-version=2021-04-12",
                             password.encode(), keep_alive=60))  # fmt: skip
    assert await asyncio.wait_for(client.packet(), 10) == mqtt.ConnAck(mqtt.ACCEPTED)
    writer.close()
