"""Bad input is a 400, never a 500: deep, huge or non-finite JSON and control characters in ids,
over HTTPS and MQTT (real TLS), on SQLite and PostgreSQL; long `$rid`s get an answer or a close.
"""

from __future__ import annotations

import asyncio
import json
import ssl
from typing import Any
from urllib.parse import quote

import aiohttp
import pytest
from aiohttp import web

from devprov.attestation.sas import build_sas
from devprov.bench.fleet import Fleet
from devprov.bench.wire import MqttClient, WireError
from devprov.domain.records import Kind
from devprov.hub.auth import parse_connection_string
from devprov.protocol import mqtt
from devprov.protocol.amqp_frames import Message, Transfer
from devprov.protocol.amqp_types import Described
from tests.conftest import Running, Webhook
from tests.helpers import (
    create_enrollment,
    create_group,
    device_request,
    device_token,
    group_device_key,
    primary_key,
    register,
)
from tests.protocol.amqp_peer import client_frame
from tests.server.test_dps_amqp import address as amqp_address
from tests.server.test_dps_amqp import authenticated, not_registered
from tests.server.test_dps_amqp import fleet as fleet  # the fixture
from tests.server.test_hub_api import hub_request
from tests.server.test_hub_mqtt import Hub, twin_request
from tests.server.test_hub_mqtt import connect as hub_connect
from tests.server.test_hub_mqtt import hub as hub  # the fixture
from tests.server.test_hub_mqtt import token as hub_token
from tests.server.test_service_api import Api, assert_azure_error
from tests.server.test_service_api import api as api  # the fixture

HUB = "hub-1.devprov.test"
REGISTER_TOPIC = "$dps/registrations/PUT/iotdps-register/?$rid={rid}"

# The bodies the attacks of issue 9 sent, each a clean 400001.
BAD_JSON = {
    "array 40,000 deep": b"[" * 40_000 + b"]" * 40_000,
    "object 12,000 deep": b'{"a":' * 12_000 + b"1" + b"}" * 12_000,
    "number of 5,000 digits": b'{"payload": {"n": ' + b"7" * 5_000 + b"}}",
    "float of 5,000 digits": b'{"payload": {"n": 0.' + b"7" * 5_000 + b"}}",
    "NaN": b'{"payload": {"n": NaN}}',
    "Infinity": b'{"payload": {"n": -Infinity}}',
    "1e999": b'{"payload": {"n": 1e999}}',
    "NUL in a string": b'{"payload": {"n": "a\\u0000b"}}',
}


async def register_raw(running: Running, registration_id: str, key: str, raw: bytes) -> Any:
    token = device_token(f"{running.id_scope}/registrations/{registration_id}", key)
    path = f"/{running.id_scope}/registrations/{registration_id}/register?api-version=2019-03-31"
    return await device_request(running, "PUT", path, raw=raw, authorization=token)


@pytest.mark.parametrize("case", sorted(BAD_JSON))
async def test_bad_json_in_a_register_body_is_400001_and_records_nothing(
    devprov: Running, case: str
) -> None:
    await devprov.service().link_hub(HUB)
    key = primary_key(await create_enrollment(devprov, "dev-j"))
    status, body, headers = await register_raw(devprov, "dev-j", key, BAD_JSON[case])
    assert status == 400, (status, body)
    assert body["errorCode"] == 400001 and "not valid JSON" in body["message"], body
    assert headers["x-ms-error-code"] == "400001"
    assert await devprov.devprov.store.get(Kind.REGISTRATION, "dev-j") is None


@pytest.mark.parametrize("case", sorted(BAD_JSON))
async def test_bad_json_in_a_service_api_body_is_400001(api: Api, case: str) -> None:
    reply = await api.call("PUT", "/enrollments/dev-s", raw=BAD_JSON[case])
    assert_azure_error(reply, 400, 400001, "not valid JSON")
    assert await api.running.devprov.store.get(Kind.ENROLLMENT, "dev-s") is None


@pytest.mark.parametrize("case", ["object 12,000 deep", "number of 5,000 digits", "NaN"])
async def test_bad_json_in_a_hub_twin_patch_is_a_400(devprov: Running, case: str) -> None:
    await devprov.service().link_hub(HUB)
    status, _, _ = await hub_request(
        devprov, "PUT", "/devices/dev-h", {"authentication": {"type": "sas"}}
    )
    assert status == 200
    fields = parse_connection_string(await devprov.hub_connection_string(HUB))
    headers = {
        "Host": HUB,
        "Content-Type": "application/json",
        "If-Match": "*",
        "Authorization": build_sas(HUB, fields["SharedAccessKey"], key_name="iothubowner"),
    }
    context = ssl.create_default_context(cafile=devprov.ca)
    url = f"https://localhost:{devprov.port}/twins/dev-h?api-version=2021-04-12"
    async with (
        aiohttp.ClientSession(connector=aiohttp.TCPConnector(ssl=context)) as http,
        http.patch(url, data=BAD_JSON[case], headers=headers, server_hostname="localhost") as got,
    ):
        answer = await got.read()
        assert got.status == 400, (got.status, answer)
        assert got.headers["iothub-errorcode"] == "ArgumentInvalid", got.headers


# Control characters in ids and names ---------------------------------------------------------

CONTROL_PATHS = [
    ("GET", "/enrollments/dev%00x"),
    ("DELETE", "/enrollments/dev%00x"),
    ("PUT", "/enrollments/dev%00x"),
    ("GET", "/enrollmentGroups/g%00"),
    ("GET", "/registrations/dev%01x"),
    ("DELETE", "/registrations/dev%00x"),
    ("GET", "/certificates/ca%00"),
    ("PUT", "/certificates/ca%1b"),
    ("GET", "/linkedHubs/hub%00.example"),
    ("PUT", "/linkedHubs/hub%00.example"),
    ("PUT", "/linkedHubs/hub%09.example"),
    ("DELETE", "/linkedHubs/hub%7f.example"),
]


@pytest.mark.parametrize(("method", "path"), CONTROL_PATHS)
async def test_a_control_character_in_an_id_or_name_is_400004(
    api: Api, method: str, path: str
) -> None:
    body = {"certificate": "x"} if "certificates" in path else {}
    reply = await api.call(method, path, body if method == "PUT" else None)
    assert_azure_error(reply, 400, 400004, "control character")
    assert await api.running.devprov.store.count(Kind.LINKED_HUB) == 0


async def test_a_control_character_in_a_registration_id_is_refused_on_every_path(
    devprov: Running,
) -> None:
    for registration_id in ("dev%00x", "dev%1fx"):
        status, body, _ = await register_raw(devprov, registration_id, "a2V5", b"{}")
        assert status == 400 and body["errorCode"] == 400004, body
    status, body, _ = await device_request(
        devprov,
        "GET",
        f"/{devprov.id_scope}/registrations/dev%00x/operations/op?api-version=2019-03-31",
    )
    assert status == 400 and body["errorCode"] == 400004, body


# Webhook answers and device payloads -----------------------------------------------------


async def test_a_nan_in_a_webhooks_initial_twin_fails_with_400212_and_stores_nothing(
    devprov: Running, webhook: Webhook
) -> None:
    await devprov.service().link_hub(HUB)
    group = await create_group(
        devprov,
        "custom",
        allocationPolicy="custom",
        customAllocationDefinition={"webhookUrl": webhook.url, "apiVersion": "2021-10-01"},
    )

    async def nan_twin(_: dict[str, Any]) -> web.StreamResponse:
        text = '{"iotHubHostName": "HUB", "initialTwin": {"tags": {"t": NaN}}}'
        text = text.replace("HUB", HUB)
        return web.Response(text=text, content_type="application/json")

    webhook.behaviour = nan_twin
    status, body, _ = await register(devprov, "dev-c", group_device_key(group, "dev-c"))
    assert status == 200, body
    state = body["registrationState"]
    assert (body["status"], state["errorCode"]) == ("failed", 400212), body
    assert "NaN" in state["errorMessage"] and "psycopg" not in state["errorMessage"]
    assert await devprov.devprov.store.count(Kind.HUB_DEVICE) == 0


async def test_a_nan_in_a_device_payload_never_reaches_the_webhook(
    devprov: Running, webhook: Webhook
) -> None:
    await devprov.service().link_hub(HUB)
    group = await create_group(
        devprov,
        "custom",
        allocationPolicy="custom",
        customAllocationDefinition={"webhookUrl": webhook.url, "apiVersion": "2021-10-01"},
    )
    raw = b'{"registrationId": "dev-n", "payload": {"t": NaN}}'
    status, body, _ = await register_raw(devprov, "dev-n", group_device_key(group, "dev-n"), raw)
    assert status == 400 and body["errorCode"] == 400001, body
    assert webhook.requests == []


# MQTT ------------------------------------------------------------------------------------------


async def dps_client(running: Running, registration_id: str, key: str) -> MqttClient:
    context = ssl.create_default_context(cafile=running.ca)
    reader, writer = await asyncio.open_connection(
        "127.0.0.1", running.devprov.instance.mqtt_port, ssl=context, server_hostname="localhost"
    )
    client = MqttClient(reader, writer)
    resource = f"{running.id_scope}/registrations/{registration_id}"
    username = f"{resource}/api-version=2019-03-31&ClientVersion=raw-test"
    password = device_token(resource, key).encode()
    client.send(mqtt.Connect(registration_id, username, password, keep_alive=60))
    connack = await asyncio.wait_for(client.packet(), 10)
    assert isinstance(connack, mqtt.ConnAck) and connack.return_code == 0, connack
    client.send(mqtt.Subscribe(1, (("$dps/registrations/res/#", 1),)))
    assert isinstance(await asyncio.wait_for(client.packet(), 10), mqtt.SubAck)
    return client


async def answer_or_close(client: MqttClient) -> mqtt.Publish | None:
    """The next PUBLISH the server sends, or None when it closes the connection instead."""
    try:
        while True:
            packet = await asyncio.wait_for(client.packet(), 20)
            if isinstance(packet, mqtt.Publish):
                if packet.qos and packet.packet_id:
                    client.send(mqtt.PubAck(packet.packet_id))
                return packet
    except WireError:
        return None


@pytest.mark.parametrize("case", sorted(BAD_JSON))
async def test_bad_json_over_mqtt_is_answered_400_on_the_response_topic(
    devprov: Running, case: str
) -> None:
    await devprov.service().link_hub(HUB)
    key = primary_key(await create_enrollment(devprov, "dev-m"))
    client = await dps_client(devprov, "dev-m", key)
    client.send(mqtt.Publish(REGISTER_TOPIC.format(rid="r1"), BAD_JSON[case], qos=1, packet_id=2))
    answer = await answer_or_close(client)
    assert answer is not None
    assert answer.topic.startswith("$dps/registrations/res/400/?$rid=r1"), answer.topic
    body = json.loads(answer.payload)
    assert body["errorCode"] == 400001, body
    assert await devprov.devprov.store.get(Kind.REGISTRATION, "dev-m") is None


@pytest.mark.parametrize(
    "rid",
    ["7" * 30_000, "%" * 22_000, "é" * 16_000, "r" * 129, "a%00b", "a%0Ab"],
    ids=["30000", "percent", "utf8", "129", "nul", "newline"],
)
async def test_a_long_or_unprintable_rid_closes_the_connection_and_the_server_goes_on(
    devprov: Running, rid: str, caplog: pytest.LogCaptureFixture
) -> None:
    await devprov.service().link_hub(HUB)
    key = primary_key(await create_enrollment(devprov, "dev-r"))
    client = await dps_client(devprov, "dev-r", key)
    client.send(mqtt.Publish(REGISTER_TOPIC.format(rid=rid), b"{}", qos=1, packet_id=2))
    assert await answer_or_close(client) is None
    assert await devprov.devprov.store.get(Kind.REGISTRATION, "dev-r") is None
    # The device is still served, with a $rid of the longest length accepted.
    client = await dps_client(devprov, "dev-r", key)
    longest = "r" * 128
    client.send(mqtt.Publish(REGISTER_TOPIC.format(rid=longest), b"{}", qos=1, packet_id=2))
    answer = await answer_or_close(client)
    assert answer is not None
    assert answer.topic == f"$dps/registrations/res/200/?$rid={longest}", answer.topic
    assert "never retrieved" not in caplog.text and "Traceback" not in caplog.text


async def test_a_poll_for_an_operation_id_with_nul_is_400004_over_mqtt(devprov: Running) -> None:
    await devprov.service().link_hub(HUB)
    key = primary_key(await create_enrollment(devprov, "dev-o"))
    client = await dps_client(devprov, "dev-o", key)
    topic = "$dps/registrations/GET/iotdps-get-operationstatus/?$rid=p&operationId=op%00x"
    client.send(mqtt.Publish(topic, b"", qos=1, packet_id=2))
    answer = await answer_or_close(client)
    assert answer is not None and answer.topic.startswith("$dps/registrations/res/400/?$rid=p")
    assert json.loads(answer.payload)["errorCode"] == 400004


async def test_a_registration_id_with_a_control_character_over_mqtt_is_refused_at_connect(
    devprov: Running,
) -> None:
    """As documented for any registration id that is not valid: CONNACK 2, then closed."""
    context = ssl.create_default_context(cafile=devprov.ca)
    reader, writer = await asyncio.open_connection(
        "127.0.0.1", devprov.devprov.instance.mqtt_port, ssl=context, server_hostname="localhost"
    )
    client = MqttClient(reader, writer)
    bad_id = "dev\x01x"
    resource = f"{devprov.id_scope}/registrations/{quote(bad_id)}"
    client.send(mqtt.Connect(bad_id, f"{resource}/api-version=2019-03-31", b"x"))
    connack = await asyncio.wait_for(client.packet(), 10)
    assert isinstance(connack, mqtt.ConnAck) and connack.return_code == 2, connack
    assert await reader.read() == b""  # closed


# Findings of the fuzzers (tests/fuzz/test_findings.py), end to end ----------------------------


async def test_a_sas_token_with_bytes_that_are_not_utf8_is_401_not_500(devprov: Running) -> None:
    await create_enrollment(devprov, "dev-u")
    path = f"/{devprov.id_scope}/registrations/dev-u/register?api-version=2019-03-31"
    request = (
        f"PUT {path} HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\n"
        "Content-Length: 2\r\nConnection: close\r\nAuthorization: SharedAccessSignature sr="
    ).encode() + b"x\x8c\x96y&sig=AAAA&se=99999999999\r\n\r\n{}"
    context = ssl.create_default_context(cafile=devprov.ca)
    reader, writer = await asyncio.open_connection("localhost", devprov.port, ssl=context)
    writer.write(request)
    await writer.drain()
    answer = await asyncio.wait_for(reader.read(), 20)
    writer.close()
    head, _, body = answer.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 401"), answer
    assert json.loads(body)["errorCode"] == 401000


@pytest.mark.parametrize("name", ["certificate_subject_unparsable", "certificate_version_18"])
async def test_an_enrollment_with_a_certificate_that_cannot_be_read_is_400004(
    api: Api, name: str
) -> None:
    from tests.fuzz.test_findings import finding

    certificate = {"certificate": finding(name)}
    body = {
        "registrationId": "dev-x",
        "attestation": {"type": "x509", "x509": {"clientCertificates": {"primary": certificate}}},
    }
    reply = await api.call("PUT", "/enrollments/dev-x", body)
    assert_azure_error(reply, 400, 400004, "certificate")
    reply = await api.call("PUT", "/certificates/ca-x", certificate)
    assert_azure_error(reply, 400, 400004, "certificate")


# AMQP --------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("properties", "data", "code"),
    [
        ({"iotdps-operation-type": "iotdps-register"}, b"[" * 2_000 + b"]" * 2_000, 400001),
        ({"iotdps-operation-type": "iotdps-register"}, BAD_JSON["number of 5,000 digits"], 400001),
        ({"iotdps-operation-type": "iotdps-register"}, BAD_JSON["NaN"], 400001),
        (
            {"iotdps-operation-type": "iotdps-get-operationstatus", "operationId": "op\x00x"},
            b"",
            400004,
        ),
    ],
    ids=["deep", "long-number", "nan", "nul-operation-id"],
)
async def test_bad_input_over_amqp_is_rejected_with_the_azure_error(
    devprov: Running, fleet: Fleet, properties: dict[str, str], data: bytes, code: int
) -> None:
    device = await authenticated(devprov, fleet, 21)
    await device.attach_sender(amqp_address(fleet, 21))
    message = Message(correlation_id="c", application_properties=properties, data=data)
    device.send(client_frame(Transfer(1, 0, b"0", 0), message.encode()))
    (disposition,) = await device.items(1)
    state = disposition.performative.state
    assert isinstance(state, Described) and state.descriptor == 0x25  # rejected
    condition, description = state.value[0].value[:2]
    assert condition == "com.microsoft:argument-error"
    assert json.loads(description)["errorCode"] == code
    await not_registered(devprov, fleet, 21)


@pytest.mark.parametrize("case", ["object 12,000 deep", "number of 5,000 digits", "NaN"])
async def test_bad_json_in_a_hub_mqtt_reported_patch_is_400_on_the_twin_topic(
    hub: Hub, case: str
) -> None:
    key = await hub.add_device("dev-1")
    client, _ = await hub_connect(hub.running, "dev-1", hub_token("dev-1", key))
    client.send(mqtt.Subscribe(1, (("$iothub/twin/res/#", 0),)))
    assert isinstance(await client.packet(), mqtt.SubAck)
    topic, body = await twin_request(
        client, "$iothub/twin/PATCH/properties/reported/?$rid=r1", BAD_JSON[case]
    )
    assert topic.startswith("$iothub/twin/res/400/?$rid=r1"), topic
    assert body["errorCode"] == 400004 and "not valid JSON" in body["message"], body
