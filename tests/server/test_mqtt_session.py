"""The MQTT session without a network: real store and registration service, bytes in and out.

A test plays the device: it encodes client packets into `MqttSession.data_received` and decodes
what the session writes with an independent client-side framer (tests/protocol/framing.py).
"""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from devprov.admin import INDIVIDUAL, Admin
from devprov.allocation.webhook import WebhookClient
from devprov.domain.models import LinkedHub
from devprov.domain.records import Kind
from devprov.hub.devices import HubDevices
from devprov.hubs.connector import DeviceIdentity, Finding
from devprov.hubs.factory import Connectors
from devprov.protocol import mqtt
from devprov.protocol.dps import DEFAULT_MAX_MESSAGE_BYTES
from devprov.protocol.dps_mqtt import RESPONSE_FILTER
from devprov.registration import RegistrationService, RegistrationSettings
from devprov.server.dps_mqtt import PACKET_OVERHEAD_BYTES, DpsMqtt
from devprov.server.mqtt_session import (
    MAX_REQUESTS_IN_PROGRESS,
    MqttSession,
    Peer,
    SessionLimits,
)
from devprov.store.database import Store
from devprov.store.schema import migrate
from devprov.wiring import connector_factory, registration_service
from tests.helpers import device_token
from tests.protocol.framing import read_packets

ID_SCOPE = "0ne00000001"
HUB = "hub-1.example"
PY_CLIENT_VERSION = "azure-iot-device-provisioning-py%2F2.14.0%283.11.7%3BLinux%29"
REGISTER = "$dps/registrations/PUT/iotdps-register/?$rid={rid}"
STATUS = "$dps/registrations/GET/iotdps-get-operationstatus/?$rid={rid}&operationId={op}"
WAIT_SECONDS = 10.0


class QuietConnector:
    """What a test connector needs beyond putting devices on hubs."""

    async def start(self) -> None:
        return None

    async def close(self) -> None:
        return None

    async def read_twin(self, hub: LinkedHub, device_id: str) -> dict[str, Any] | None:
        return None

    async def remove_device(self, hub: LinkedHub, device_id: str) -> None:
        return None

    async def check(self, hub: LinkedHub) -> list[Finding]:
        return []


class SlowConnector(QuietConnector):
    """A hub connector that holds each device until the test lets it through."""

    def __init__(self) -> None:
        self.release = asyncio.Event()
        self.devices: list[DeviceIdentity] = []

    async def upsert_device(self, hub: LinkedHub, identity: DeviceIdentity) -> None:
        await self.release.wait()
        self.devices.append(identity)


class BrokenConnector(QuietConnector):
    """A hub connector whose hub answers with an error in French."""

    async def upsert_device(self, hub: LinkedHub, identity: DeviceIdentity) -> None:
        raise RuntimeError("le hub répond : « accès refusé » — café fermé")


class Wire:
    """The transport the session writes to."""

    def __init__(self) -> None:
        self.written = bytearray()
        self.closed = False

    def write(self, data: bytes) -> None:
        self.written += data

    def close(self) -> None:
        self.closed = True

    @property
    def packets(self) -> list[mqtt.Packet]:
        packets, rest = read_packets(bytes(self.written))
        assert rest == b"", "the session wrote part of a packet"
        return packets


@dataclass
class Device:
    """The test's side of one MQTT connection."""

    session: MqttSession
    wire: Wire

    def send(self, *packets: mqtt.Packet) -> None:
        self.session.data_received(b"".join(mqtt.encode(packet) for packet in packets))

    def send_raw(self, data: bytes) -> None:
        self.session.data_received(data)

    async def until(self, predicate: Callable[[list[mqtt.Packet]], bool]) -> list[mqtt.Packet]:
        """Wait (boundedly) until the packets received so far satisfy `predicate`."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + WAIT_SECONDS
        while not predicate(self.wire.packets):
            assert loop.time() < deadline, f"gave up waiting; received {self.wire.packets}"
            await asyncio.sleep(0.01)
        return self.wire.packets

    async def received(self, count: int) -> list[mqtt.Packet]:
        return await self.until(lambda packets: len(packets) >= count)

    async def closed(self) -> None:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + WAIT_SECONDS
        while not self.wire.closed:
            assert loop.time() < deadline, "the session did not close"
            await asyncio.sleep(0.01)

    async def responses(self, count: int) -> list[mqtt.Publish]:
        packets = await self.until(lambda ps: len(publishes(ps)) >= count)
        return publishes(packets)

    async def connected(self, connect: mqtt.Connect) -> None:
        self.send(connect)
        assert await self.received(1) == [mqtt.ConnAck(mqtt.ACCEPTED)]
        self.send(mqtt.Subscribe(1, ((RESPONSE_FILTER, 1),)))
        assert (await self.received(2))[1] == mqtt.SubAck(1, (1,))


def publishes(packets: list[mqtt.Packet]) -> list[mqtt.Publish]:
    return [p for p in packets if isinstance(p, mqtt.Publish)]


@dataclass
class Dps:
    store: Store
    admin: Admin
    registrations: RegistrationService
    slow: SlowConnector
    sessions: list[MqttSession] = field(default_factory=list)

    async def enroll(self, registration_id: str, **fields: Any) -> str:
        body = {
            "registrationId": registration_id,
            "attestation": {"type": "symmetricKey"},
            **fields,
        }
        record = await self.admin.put(INDIVIDUAL, registration_id, body, None)
        key: str = record["attestation"]["symmetricKey"]["primaryKey"]
        return key

    def open(self) -> Device:
        wire = Wire()
        session = MqttSession(
            [DpsMqtt(self.registrations, DEFAULT_MAX_MESSAGE_BYTES)],
            wire.write,
            wire.close,
            Peer(),
            DEFAULT_MAX_MESSAGE_BYTES + PACKET_OVERHEAD_BYTES,
        )
        self.sessions.append(session)
        return Device(session, wire)


@pytest.fixture
async def dps(tmp_path: Path) -> AsyncIterator[Dps]:
    url = f"sqlite:///{tmp_path / 'devprov.db'}"
    migrate(url)
    store = Store.connect(url)
    slow = SlowConnector()
    factory = connector_factory(store)
    factory.register("slow", lambda _hub: slow)
    factory.register("broken", lambda _hub: BrokenConnector())
    connectors = Connectors(factory)
    webhooks = WebhookClient()
    registrations = registration_service(store, ID_SCOPE, connectors, webhooks)
    admin = Admin(store, factory.prepare)
    await admin.put_linked_hub(HUB, {})
    running = Dps(store, admin, registrations, slow)
    yield running
    for session in running.sessions:
        session.connection_lost()
    slow.release.set()
    # Let cancelled requests unwind before the store goes away (they may be inside a query).
    others = asyncio.all_tasks() - {asyncio.current_task()}
    if others:
        await asyncio.wait(others, timeout=WAIT_SECONDS)
    await registrations.close()
    await connectors.close()
    await webhooks.close()
    await store.close()


def username(registration_id: str, id_scope: str = ID_SCOPE) -> str:
    return (
        f"{id_scope}/registrations/{registration_id}/api-version=2019-03-31"
        f"&ClientVersion={PY_CLIENT_VERSION}"
    )


def connect(
    registration_id: str,
    key: str,
    *,
    client_id: str | None = None,
    keep_alive: int = 60,
    style: str = "python",
    **fields: Any,
) -> mqtt.Connect:
    """A CONNECT as the SDKs send it: client id = registration id, SAS token as password."""
    token = device_token(f"{ID_SCOPE}/registrations/{registration_id}", key, style=style)
    options: dict[str, Any] = {
        "username": username(registration_id),
        "password": token.encode(),
        "clean_session": style != "python",
        **fields,
    }
    return mqtt.Connect(
        client_id=registration_id if client_id is None else client_id,
        keep_alive=keep_alive,
        **options,
    )


def register(rid: str, body: Any, packet_id: int | None = 2, qos: int = 1) -> mqtt.Publish:
    payload = json.dumps(body).encode() if not isinstance(body, bytes) else body
    return mqtt.Publish(REGISTER.format(rid=rid), payload, qos, packet_id if qos else None)


def poll(rid: str, operation_id: str, packet_id: int = 3) -> mqtt.Publish:
    return mqtt.Publish(STATUS.format(rid=rid, op=operation_id), b" ", 1, packet_id)


def response_json(packet: mqtt.Publish) -> Any:
    text = packet.payload.decode("ascii")  # the Node SDK decodes responses as ASCII
    return json.loads(text)


# Registering --------------------------------------------------------------------------------


@pytest.mark.parametrize("style", ["python", "node", "c"])
async def test_register_over_mqtt(dps: Dps, style: str) -> None:
    key = await dps.enroll("dev-1")
    device = dps.open()
    await device.connected(connect("dev-1", key, style=style))
    rid = str(uuid.uuid4())

    device.send(register(rid, {"registrationId": "dev-1", "payload": {"modelId": "dtmi:x;1"}}))

    (response,) = await device.responses(1)
    packets = device.wire.packets
    assert packets[:3] == [mqtt.ConnAck(0), mqtt.SubAck(1, (1,)), mqtt.PubAck(2)]
    assert packets[3] == response
    assert response.topic == f"$dps/registrations/res/200/?$rid={rid}"
    assert response.qos == 1 and response.packet_id is not None
    body = response_json(response)
    assert body["status"] == "assigned"
    assert body["operationId"]
    state = body["registrationState"]
    assert state["registrationId"] == "dev-1"
    assert state["assignedHub"] == HUB
    assert state["deviceId"] == "dev-1"
    assert state["status"] == "assigned"
    assert await dps.store.get(Kind.REGISTRATION, "dev-1") is not None
    assert [d["deviceId"] for d in await HubDevices(dps.store).list(HUB)] == ["dev-1"]

    device.send(mqtt.PubAck(response.packet_id), mqtt.Disconnect())
    assert device.wire.closed
    assert len(device.wire.packets) == 4


async def test_register_with_qos0_as_the_c_sdk_publishes(dps: Dps) -> None:
    key = await dps.enroll("dev-1")
    device = dps.open()
    await device.connected(connect("dev-1", key, style="c"))

    device.send(register("1", {"registrationId": "dev-1"}, qos=0))

    (response,) = await device.responses(1)
    assert not any(isinstance(p, mqtt.PubAck) for p in device.wire.packets)
    assert response.topic == "$dps/registrations/res/200/?$rid=1"
    assert response_json(response)["status"] == "assigned"


async def test_register_with_an_empty_body(dps: Dps) -> None:
    key = await dps.enroll("dev-1")
    device = dps.open()
    await device.connected(connect("dev-1", key))

    device.send(register("7", b""))

    (response,) = await device.responses(1)
    assert response.topic == "$dps/registrations/res/200/?$rid=7"
    assert response_json(response)["status"] == "assigned"


async def test_slow_registration_answers_202_with_retry_after_then_poll(dps: Dps) -> None:
    await dps.admin.put_linked_hub("slow.example", {"connector": "slow"})
    dps.registrations.settings = RegistrationSettings(ID_SCOPE, fast_path_seconds=0.05)
    key = await dps.enroll("dev-1", iotHubs=["slow.example"], allocationPolicy="static")
    device = dps.open()
    await device.connected(connect("dev-1", key))

    device.send(register("r1", {"registrationId": "dev-1"}))

    (first,) = await device.responses(1)
    assert first.topic == "$dps/registrations/res/202/?$rid=r1&retry-after=1"
    pending = response_json(first)
    assert pending["status"] == "assigning"
    operation_id = pending["operationId"]

    device.send(mqtt.PubAck(first.packet_id or 0), poll("p", operation_id))
    (_, still_pending) = await device.responses(2)
    assert still_pending.topic == "$dps/registrations/res/202/?$rid=p&retry-after=1"
    assert response_json(still_pending) == pending
    device.send(mqtt.PubAck(still_pending.packet_id or 0))

    dps.slow.release.set()
    for attempt in range(200):  # until the registration task has written its result
        device.send(poll(f"p{attempt}", operation_id, packet_id=10 + attempt))
        answer = (await device.responses(attempt + 3))[-1]
        device.send(mqtt.PubAck(answer.packet_id or 0))
        if not answer.topic.startswith("$dps/registrations/res/202/"):
            break
        await asyncio.sleep(0.02)
    assert answer.topic == f"$dps/registrations/res/200/?$rid=p{attempt}"
    body = response_json(answer)
    assert body["operationId"] == operation_id
    assert body["status"] == "assigned"
    assert body["registrationState"]["assignedHub"] == "slow.example"
    assert [d.device_id for d in dps.slow.devices] == ["dev-1"]


async def test_poll_of_an_unknown_operation_gets_404(dps: Dps) -> None:
    key = await dps.enroll("dev-1")
    device = dps.open()
    await device.connected(connect("dev-1", key))

    device.send(poll("q", "5.0123456789abcdef.nope"))

    (response,) = await device.responses(1)
    assert mqtt.PubAck(3) in device.wire.packets
    assert response.topic == "$dps/registrations/res/404/?$rid=q"
    body = response_json(response)
    assert set(body) == {"errorCode", "trackingId", "message", "timestampUtc"}
    assert body["errorCode"] == 404203
    assert "5.0123456789abcdef.nope" in body["message"]
    uuid.UUID(body["trackingId"])
    assert not device.wire.closed


async def test_disabled_enrollment_is_refused_on_the_request(dps: Dps) -> None:
    key = await dps.enroll("dev-1", provisioningStatus="disabled")
    device = dps.open()
    await device.connected(connect("dev-1", key))

    device.send(register("1", {"registrationId": "dev-1"}))

    (response,) = await device.responses(1)
    assert response.topic == "$dps/registrations/res/403/?$rid=1"
    assert response_json(response)["errorCode"] == 403001


async def test_invalid_json_body_gets_400(dps: Dps) -> None:
    key = await dps.enroll("dev-1")
    device = dps.open()
    await device.connected(connect("dev-1", key))

    device.send(register("1", b"{not json"))

    (response,) = await device.responses(1)
    assert response.topic == "$dps/registrations/res/400/?$rid=1"
    assert response_json(response)["errorCode"] == 400001


# Responses are ASCII ------------------------------------------------------------------------


async def test_non_ascii_device_payload(dps: Dps) -> None:
    key = await dps.enroll("dev-1")
    device = dps.open()
    await device.connected(connect("dev-1", key))

    device.send(register("1", {"registrationId": "dev-1", "payload": {"name": "café"}}))

    (response,) = await device.responses(1)
    assert response_json(response)["status"] == "assigned"


async def test_non_ascii_error_message_is_escaped(dps: Dps) -> None:
    key = await dps.enroll("dev-1")
    device = dps.open()
    await device.connected(connect("dev-1", key))

    device.send(register("1", {"registrationId": "café"}))

    (response,) = await device.responses(1)
    assert response.topic == "$dps/registrations/res/400/?$rid=1"
    assert response.payload.isascii()
    assert b"\\u00e9" in response.payload
    assert "'café'" in response_json(response)["message"]


async def test_an_invalid_registration_id_is_refused_at_connect(dps: Dps) -> None:
    """Not accepted and held open to be told later: CONNACK 2, and the connection closed."""
    device = dps.open()
    registration_id = "café"
    device.send(
        mqtt.Connect(registration_id, username(registration_id), b"SharedAccessSignature x")
    )

    assert await device.received(1) == [mqtt.ConnAck(mqtt.IDENTIFIER_REJECTED)]
    await device.closed()


async def test_non_ascii_hub_error_in_a_failed_registration(dps: Dps) -> None:
    await dps.admin.put_linked_hub("broken.example", {"connector": "broken"})
    key = await dps.enroll("dev-1", iotHubs=["broken.example"], allocationPolicy="static")
    device = dps.open()
    await device.connected(connect("dev-1", key))

    device.send(register("1", {"registrationId": "dev-1"}))

    (response,) = await device.responses(1)
    assert response.topic == "$dps/registrations/res/200/?$rid=1"
    assert response.payload.isascii()
    body = response_json(response)
    assert body["status"] == "failed"
    assert "café fermé" in body["registrationState"]["errorMessage"]


# CONNECT ------------------------------------------------------------------------------------


async def test_wrong_key_gets_connack_5_and_close(dps: Dps) -> None:
    await dps.enroll("dev-1")
    other_key = await dps.enroll("dev-2")
    device = dps.open()

    token = device_token(f"{ID_SCOPE}/registrations/dev-1", other_key)
    device.send(mqtt.Connect("dev-1", username("dev-1"), token.encode(), keep_alive=60))

    await device.closed()
    assert device.wire.packets == [mqtt.ConnAck(mqtt.NOT_AUTHORIZED)]


@pytest.mark.parametrize(
    "password",
    [None, b"", b"not a token", b"SharedAccessSignature sr=x&sig=AAAA&se=1"],
    ids=["none", "empty", "garbage", "other-resource"],
)
async def test_missing_or_malformed_token_gets_connack_5(dps: Dps, password: bytes | None) -> None:
    await dps.enroll("dev-1")
    device = dps.open()

    device.send(mqtt.Connect("dev-1", username("dev-1"), password))

    await device.closed()
    assert device.wire.packets == [mqtt.ConnAck(5)]


async def test_expired_token_gets_connack_5(dps: Dps) -> None:
    key = await dps.enroll("dev-1")
    token = device_token(f"{ID_SCOPE}/registrations/dev-1", key, expiry=1_000_000)
    device = dps.open()

    device.send(mqtt.Connect("dev-1", username("dev-1"), token.encode()))

    await device.closed()
    assert device.wire.packets == [mqtt.ConnAck(5)]


async def test_unknown_device_and_other_id_scope_get_connack_5(dps: Dps) -> None:
    key = await dps.enroll("dev-1")
    unknown = dps.open()
    unknown.send(connect("dev-9", key))
    other_scope = dps.open()
    other_scope.send(mqtt.Connect("dev-1", username("dev-1", "0ne99999999"), b"x"))

    await unknown.closed()
    await other_scope.closed()
    assert unknown.wire.packets == [mqtt.ConnAck(5)]
    assert other_scope.wire.packets == [mqtt.ConnAck(5)]


@pytest.mark.parametrize(
    "user",
    [None, "", "dev-1", f"{ID_SCOPE}/devices/dev-1/api-version=2019-03-31", f"{ID_SCOPE}/x"],
)
async def test_malformed_user_name_gets_connack_4(dps: Dps, user: str | None) -> None:
    key = await dps.enroll("dev-1")
    device = dps.open()

    password = None if user is None else connect("dev-1", key).password  # no password alone
    device.send(connect("dev-1", key, username=user, password=password))

    await device.closed()
    assert device.wire.packets == [mqtt.ConnAck(mqtt.BAD_USERNAME_OR_PASSWORD)]


@pytest.mark.parametrize("client_id", ["dev-2", "", "dev-1x"])
async def test_client_id_other_than_registration_id_gets_connack_2(
    dps: Dps, client_id: str
) -> None:
    key = await dps.enroll("dev-1")
    device = dps.open()

    device.send(connect("dev-1", key, client_id=client_id))

    await device.closed()
    assert device.wire.packets == [mqtt.ConnAck(mqtt.IDENTIFIER_REJECTED)]


async def test_client_id_is_compared_without_case(dps: Dps) -> None:
    key = await dps.enroll("dev-1")
    device = dps.open()

    device.send(connect("dev-1", key, client_id="DEV-1"))

    assert await device.received(1) == [mqtt.ConnAck(0)]


async def test_protocol_level_3_gets_connack_1(dps: Dps) -> None:
    key = await dps.enroll("dev-1")
    device = dps.open()

    device.send(connect("dev-1", key, protocol_level=3))

    await device.closed()
    assert device.wire.packets == [mqtt.ConnAck(mqtt.UNACCEPTABLE_PROTOCOL_VERSION)]


async def test_second_connect_with_bad_level_before_connack_gets_no_connack(dps: Dps) -> None:
    key = await dps.enroll("dev-1")
    device = dps.open()

    device.send(connect("dev-1", key), connect("dev-1", key, protocol_level=3))

    await device.closed()
    await asyncio.sleep(0.05)  # let the first CONNECT's check finish
    assert device.wire.packets == []


async def test_first_packet_other_than_connect_closes_silently(dps: Dps) -> None:
    device = dps.open()

    device.send(mqtt.PingReq())

    assert device.wire.closed
    assert device.wire.packets == []


async def test_tls_client_hello_in_the_clear_closes_silently(dps: Dps) -> None:
    device = dps.open()

    device.send_raw(b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03")  # 0x16: flags 6 on CONNECT

    assert device.wire.closed
    assert device.wire.packets == []


# Packets after CONNECT ----------------------------------------------------------------------


async def test_subscribe_grants_only_the_response_filter(dps: Dps) -> None:
    key = await dps.enroll("dev-1")
    device = dps.open()
    device.send(connect("dev-1", key))
    await device.received(1)

    device.send(
        mqtt.Subscribe(
            5,
            (
                (RESPONSE_FILTER, 2),
                (RESPONSE_FILTER, 0),
                ("$dps/registrations/res/200/#", 1),
                ("$dps/registrations/#", 1),
                ("#", 1),
                ("devices/dev-1/messages/devicebound/#", 1),
            ),
        )
    )

    packets = await device.received(2)
    assert packets[1] == mqtt.SubAck(5, (1, 0, 0x80, 0x80, 0x80, 0x80))


async def test_unsubscribe_gets_unsuback(dps: Dps) -> None:
    key = await dps.enroll("dev-1")
    device = dps.open()
    await device.connected(connect("dev-1", key))

    device.send(mqtt.Unsubscribe(4, (RESPONSE_FILTER,)))

    assert (await device.received(3))[2] == mqtt.UnsubAck(4)


async def test_pingreq_gets_pingresp(dps: Dps) -> None:
    key = await dps.enroll("dev-1")
    device = dps.open()
    await device.connected(connect("dev-1", key))

    device.send(mqtt.PingReq(), mqtt.PingReq())

    assert (await device.received(4))[2:] == [mqtt.PingResp(), mqtt.PingResp()]
    assert not device.wire.closed


async def test_packets_sent_before_connack_are_answered_after_it(dps: Dps) -> None:
    key = await dps.enroll("dev-1")
    device = dps.open()

    device.send(
        connect("dev-1", key),
        mqtt.Subscribe(1, ((RESPONSE_FILTER, 1),)),
        mqtt.PingReq(),
        register("r", {"registrationId": "dev-1"}, packet_id=2),
    )

    packets = await device.received(5)
    assert packets[:4] == [
        mqtt.ConnAck(0),
        mqtt.SubAck(1, (1,)),
        mqtt.PingResp(),
        mqtt.PubAck(2),
    ]
    response = packets[4]
    assert isinstance(response, mqtt.Publish)
    assert response.topic == "$dps/registrations/res/200/?$rid=r"


async def test_packets_held_for_a_refused_connect_are_dropped(dps: Dps) -> None:
    await dps.enroll("dev-1")
    device = dps.open()

    device.send(
        mqtt.Connect("dev-1", username("dev-1"), b"SharedAccessSignature sr=a&sig=AAAA&se=1"),
        mqtt.Subscribe(1, ((RESPONSE_FILTER, 1),)),
        mqtt.PingReq(),
    )

    await device.closed()
    assert device.wire.packets == [mqtt.ConnAck(5)]


async def test_publish_to_an_unknown_topic_closes(dps: Dps) -> None:
    key = await dps.enroll("dev-1")
    device = dps.open()
    await device.connected(connect("dev-1", key))

    device.send(mqtt.Publish("devices/dev-1/messages/events/", b"{}", 1, 9))

    assert device.wire.closed
    assert device.session.connection.state is mqtt.State.CLOSED
    assert publishes(device.wire.packets) == []


async def test_publish_without_rid_closes(dps: Dps) -> None:
    key = await dps.enroll("dev-1")
    device = dps.open()
    await device.connected(connect("dev-1", key))

    device.send(mqtt.Publish("$dps/registrations/PUT/iotdps-register/?", b"{}", 0))

    assert device.wire.closed


async def test_qos2_publish_closes(dps: Dps) -> None:
    key = await dps.enroll("dev-1")
    device = dps.open()
    await device.connected(connect("dev-1", key))

    device.send(mqtt.Publish(REGISTER.format(rid="1"), b"{}", 2, 5))

    assert device.wire.closed
    assert len(device.wire.packets) == 2


async def test_data_after_disconnect_is_ignored(dps: Dps) -> None:
    key = await dps.enroll("dev-1")
    device = dps.open()
    await device.connected(connect("dev-1", key))

    device.send(mqtt.Disconnect())
    device.send(mqtt.PingReq())

    assert device.wire.closed
    assert len(device.wire.packets) == 2


async def test_too_many_requests_at_once_close_the_connection(dps: Dps) -> None:
    key = await dps.enroll("dev-1")
    device = dps.open()
    await device.connected(connect("dev-1", key))

    device.send(
        *(poll(f"q{i}", "5.x.y", packet_id=10 + i) for i in range(MAX_REQUESTS_IN_PROGRESS + 1))
    )

    assert device.wire.closed


async def test_as_many_requests_as_allowed_at_once_are_answered(dps: Dps) -> None:
    key = await dps.enroll("dev-1")
    device = dps.open()
    await device.connected(connect("dev-1", key))

    device.send(
        *(poll(f"q{i}", "5.x.y", packet_id=10 + i) for i in range(MAX_REQUESTS_IN_PROGRESS))
    )

    responses = await device.responses(MAX_REQUESTS_IN_PROGRESS)
    assert sorted(r.topic for r in responses) == sorted(
        f"$dps/registrations/res/404/?$rid=q{i}" for i in range(MAX_REQUESTS_IN_PROGRESS)
    )
    assert not device.wire.closed


async def test_as_many_requests_as_allowed_before_connack_are_answered(dps: Dps) -> None:
    key = await dps.enroll("dev-1")
    device = dps.open()

    device.send(
        connect("dev-1", key),
        mqtt.Subscribe(1, ((RESPONSE_FILTER, 1),)),
        *(poll(f"q{i}", "5.x.y", packet_id=10 + i) for i in range(MAX_REQUESTS_IN_PROGRESS)),
    )

    responses = await device.until(
        lambda ps: device.wire.closed or len(publishes(ps)) == MAX_REQUESTS_IN_PROGRESS
    )
    assert not device.wire.closed
    assert len(publishes(responses)) == MAX_REQUESTS_IN_PROGRESS


async def test_a_device_that_never_acknowledges_responses_is_closed(dps: Dps) -> None:
    key = await dps.enroll("dev-1")
    device = dps.open()
    await device.connected(connect("dev-1", key))
    limit = device.session.connection.max_inflight

    for i in range(limit):
        device.send(poll(f"q{i}", "5.x.y", packet_id=100 + i))
        await device.responses(i + 1)
    assert not device.wire.closed

    device.send(poll("one-too-many", "5.x.y", packet_id=99))

    await device.closed()
    assert len(publishes(device.wire.packets)) == limit


async def test_acknowledged_responses_free_their_slots(dps: Dps) -> None:
    key = await dps.enroll("dev-1")
    device = dps.open()
    await device.connected(connect("dev-1", key))
    limit = device.session.connection.max_inflight

    for i in range(limit + 4):
        device.send(poll(f"q{i}", "5.x.y", packet_id=100 + i))
        response = (await device.responses(i + 1))[-1]
        device.send(mqtt.PubAck(response.packet_id or 0))

    assert not device.wire.closed


# Keep-alive ---------------------------------------------------------------------------------


async def test_silent_client_is_closed_after_one_and_a_half_keep_alives(dps: Dps) -> None:
    key = await dps.enroll("dev-1")
    device = dps.open()
    device.send(connect("dev-1", key, keep_alive=1))
    assert await device.received(1) == [mqtt.ConnAck(0)]
    assert device.session.connection.keep_alive_timeout == 1.5

    await device.closed()  # nothing sent: the session's own timer closes it

    assert device.session.connection.state is mqtt.State.CLOSED


@pytest.mark.parametrize("asked", [0, 65535], ids=["none", "18-hours"])
async def test_a_keep_alive_of_none_or_past_the_ceiling_gets_the_ceiling(
    dps: Dps, asked: int
) -> None:
    key = await dps.enroll("dev-1")
    wire = Wire()
    session = MqttSession(
        [DpsMqtt(dps.registrations, DEFAULT_MAX_MESSAGE_BYTES)],
        wire.write,
        wire.close,
        limits=SessionLimits(max_keep_alive=1),
    )
    dps.sessions.append(session)
    device = Device(session, wire)
    device.send(connect("dev-1", key, keep_alive=asked))
    assert await device.received(1) == [mqtt.ConnAck(0)]
    assert session.limits.idle_timeout(asked) == 1.5

    await device.closed()  # silent: closed after 1.5 x the ceiling


def test_the_default_connect_deadline_is_the_documented_30_s() -> None:
    assert SessionLimits().connect_timeout == 30.0  # docs/behaviour.md; the trickling test is
    # in tests/server/test_slow_peers.py
