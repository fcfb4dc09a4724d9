"""DPS over MQTT: the CONNECT user name, the request topics and the response topic.

The response topic is checked with the Python SDK's own topic parser, and with the Node SDK's
regular expression and the C SDK's `retry-after=` scan re-stated in Python.
"""

from __future__ import annotations

import re
import uuid
from typing import Any
from urllib.parse import parse_qs, quote, urlencode

import pytest
from azure.iot.device.provisioning.pipeline import mqtt_topic_provisioning

from devprov.protocol import mqtt
from devprov.protocol.dps_mqtt import (
    RESPONSE_FILTER,
    Identity,
    RegisterTopic,
    StatusTopic,
    TopicError,
    parse_request_topic,
    parse_username,
    response_topic,
)

SCOPE = "0ne00000001"
PY_USER_AGENT = (
    "azure-iot-device-provisioning-py/2.14.0(3.11.7;Linux #1 SMP PREEMPT_DYNAMIC;x86_64)"
)
sdk_topics: Any = mqtt_topic_provisioning  # the Python SDK's own topic helpers (untyped)
NODE_REGEX = re.compile(
    r"^\$dps\/registrations\/res\/(.*)\/\?(.*)$"
)  # azure-iot-provisioning-device-mqtt


def python_sdk_username(registration_id: str) -> str:
    """As pipeline_stages_provisioning_mqtt builds it (urlencode with quote)."""
    query = urlencode(
        [("api-version", "2019-03-31"), ("ClientVersion", PY_USER_AGENT)], quote_via=quote
    )
    return f"{SCOPE}/registrations/{registration_id}/{query}"


# parse_username -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "username",
    [
        python_sdk_username("dev-1"),
        f"{SCOPE}/registrations/dev-1/api-version=2019-03-31"
        "&ClientVersion=azure-iot-device-provisioning-py%2F2.14.0%283.11.7%3BLinux%29",
        # Node: ClientVersion=encodeURIComponent(userAgent)
        f"{SCOPE}/registrations/dev-1/api-version=2019-03-31"
        "&ClientVersion=azure-iot-provisioning-device%2F1.9.1",
        # C: "%s/registrations/%s/api-version=%s&ClientVersion=%s" with the bare version
        f"{SCOPE}/registrations/dev-1/api-version=2019-03-31&ClientVersion=1.13.0",
    ],
    ids=["python-sdk", "python-literal", "node", "c"],
)
def test_parse_username_of_each_sdk(username: str) -> None:
    assert parse_username(username) == Identity(SCOPE, "dev-1", "2019-03-31")


def test_parse_username_keeps_case_and_reads_unescaped_slashes_in_the_query() -> None:
    identity = parse_username(f"{SCOPE}/registrations/Dev.A:1/api-version=2021-06-01&x=a/b/c")
    assert identity == Identity(SCOPE, "Dev.A:1", "2021-06-01")


def test_parse_username_without_api_version() -> None:
    assert parse_username(f"{SCOPE}/registrations/dev-1") == Identity(SCOPE, "dev-1", None)
    assert parse_username(f"{SCOPE}/registrations/dev-1/") == Identity(SCOPE, "dev-1", None)
    assert parse_username(f"{SCOPE}/registrations/dev-1/ClientVersion=1").api_version is None


def test_parse_username_decodes_percent_escapes_in_the_ids() -> None:
    identity = parse_username(f"{SCOPE}/registrations/dev%2D1/api-version=2019-03-31")
    assert identity.registration_id == "dev-1"


@pytest.mark.parametrize(
    "username",
    [
        None,
        "",
        SCOPE,
        f"{SCOPE}/registrations",
        f"{SCOPE}/registrations/",
        f"{SCOPE}/registrations//api-version=2019-03-31",
        "/registrations/dev-1/api-version=2019-03-31",
        f"{SCOPE}/devices/dev-1/api-version=2019-03-31",
        f"{SCOPE}/Registrations/dev-1/api-version=2019-03-31",
        "dev-1",
        "myhub.azure-devices.net/dev-1/?api-version=2021-04-12",
    ],
)
def test_parse_username_refuses_other_shapes(username: str | None) -> None:
    with pytest.raises(TopicError):
        parse_username(username)


def test_topic_error_is_a_value_error() -> None:
    assert issubclass(TopicError, ValueError)


# parse_request_topic ------------------------------------------------------------------------


def test_register_topic() -> None:
    topic = "$dps/registrations/PUT/iotdps-register/?$rid=1"
    assert parse_request_topic(topic) == RegisterTopic("1")


def test_register_topic_of_each_sdk() -> None:
    rid = str(uuid.uuid4())
    assert parse_request_topic(sdk_topics.get_register_topic_for_publish(rid)) == RegisterTopic(
        rid
    )  # Python SDK
    node = f"$dps/registrations/PUT/iotdps-register/?$rid={rid}"
    assert parse_request_topic(node) == RegisterTopic(rid)
    c_sdk = "$dps/registrations/PUT/iotdps-register/?$rid=%d" % 65534  # noqa: UP031
    assert parse_request_topic(c_sdk) == RegisterTopic("65534")


def test_status_topic_of_each_sdk() -> None:
    rid, operation_id = str(uuid.uuid4()), f"5.316aac5bdc130deb.{uuid.uuid4()}"
    expected = StatusTopic(rid, operation_id)
    assert parse_request_topic(sdk_topics.get_query_topic_for_publish(rid, operation_id)) == (
        expected
    )
    prefix = "$dps/registrations/GET/iotdps-get-operationstatus/?"
    assert parse_request_topic(f"{prefix}$rid={rid}&operationId={operation_id}") == expected
    assert parse_request_topic(f"{prefix}operationId={operation_id}&$rid={rid}") == expected


def test_register_topic_ignores_other_parameters() -> None:
    topic = "$dps/registrations/PUT/iotdps-register/?foo=bar&$rid=9&operationId=x"
    assert parse_request_topic(topic) == RegisterTopic("9")


@pytest.mark.parametrize(
    "topic",
    [
        "$dps/registrations/PUT/iotdps-register/?",
        "$dps/registrations/PUT/iotdps-register/?$rid=",
        "$dps/registrations/PUT/iotdps-register/?rid=1",
        "$dps/registrations/PUT/iotdps-register/?operationId=x",
        "$dps/registrations/GET/iotdps-get-operationstatus/?operationId=x",
        "$dps/registrations/GET/iotdps-get-operationstatus/?$rid=&operationId=x",
        "$dps/registrations/GET/iotdps-get-operationstatus/?$rid=1",
        "$dps/registrations/GET/iotdps-get-operationstatus/?$rid=1&operationId=",
    ],
)
def test_request_topic_without_rid_or_operation_id(topic: str) -> None:
    with pytest.raises(TopicError):
        parse_request_topic(topic)


@pytest.mark.parametrize(
    "topic",
    [
        "$dps/registrations/PUT/iotdps-register",
        "$dps/registrations/PUT/iotdps-register/$rid=1",
        "$dps/registrations/POST/iotdps-register/?$rid=1",
        "$dps/registrations/GET/iotdps-register/?$rid=1",
        "$dps/registrations/PUT/iotdps-get-operationstatus/?$rid=1&operationId=x",
        "$dps/registrations/res/200/?$rid=1",
        "$DPS/registrations/PUT/iotdps-register/?$rid=1",
        "devices/dev-1/messages/events/",
        "$iothub/twin/GET/?$rid=1",
        "",
    ],
)
def test_other_topics_are_refused(topic: str) -> None:
    with pytest.raises(TopicError):
        parse_request_topic(topic)


# response_topic -----------------------------------------------------------------------------


def test_response_topic_puts_rid_first() -> None:
    assert response_topic(200, "abc") == "$dps/registrations/res/200/?$rid=abc"
    assert response_topic(202, "abc", 3) == "$dps/registrations/res/202/?$rid=abc&retry-after=3"
    assert response_topic(429, "1", 0) == "$dps/registrations/res/429/?$rid=1&retry-after=0"


def test_response_topic_matches_the_subscription() -> None:
    prefix = RESPONSE_FILTER.removesuffix("#")
    assert response_topic(404, "x").startswith(prefix)


@pytest.mark.parametrize(
    ("status", "retry_after"), [(200, None), (202, 1), (202, 5), (400, None), (429, 30), (500, 0)]
)
def test_python_sdk_reads_our_response_topic(status: int, retry_after: int | None) -> None:
    rid = str(uuid.uuid4())
    topic = response_topic(status, rid, retry_after)

    assert sdk_topics.is_dps_response_topic(topic)
    assert sdk_topics.extract_status_code_from_dps_response_topic(topic) == str(status)
    properties = sdk_topics.extract_properties_from_dps_response_topic(topic)
    expected = {"rid": rid} | ({"retry-after": str(retry_after)} if retry_after is not None else {})
    assert properties == expected


def test_python_sdk_round_trip_of_its_request_id() -> None:
    rid = str(uuid.uuid4())
    request = parse_request_topic(sdk_topics.get_register_topic_for_publish(rid))
    topic = response_topic(200, request.rid)
    assert sdk_topics.extract_properties_from_dps_response_topic(topic)["rid"] == rid


@pytest.mark.parametrize("retry_after", [None, 2])
def test_node_sdk_reads_our_response_topic(retry_after: int | None) -> None:
    rid = str(uuid.uuid4())
    match = NODE_REGEX.match(response_topic(202, rid, retry_after))

    assert match is not None
    assert match.group(1) == "202"
    query = parse_qs(match.group(2))
    assert query["$rid"] == [rid]
    assert query.get("retry-after") == ([str(retry_after)] if retry_after is not None else None)


def leading_digits(text: str) -> str:
    return text[: len(text) - len(text.lstrip("0123456789"))]


def test_c_sdk_reads_our_response_topic() -> None:
    """prov_transport_mqtt_common.c: atol() after the prefix, then a scan for `retry-after`."""
    topic = response_topic(202, "65534", 7)
    prefix = "$dps/registrations/res/"
    assert topic.startswith(prefix)
    assert leading_digits(topic[len(prefix) :]) == "202"  # atol()
    after = topic[topic.index("retry-after") + len("retry-after") + 1 :]
    assert leading_digits(after) == "7"
    assert "retry-after" not in response_topic(200, "65534")


def test_response_topic_is_a_valid_publish_topic_for_sdk_rids() -> None:
    for rid in (str(uuid.uuid4()), "1", "65535"):
        packet = mqtt.Publish(response_topic(200, rid, 1), b"{}", 1, 1)
        assert mqtt.decode(3, 0x02, mqtt.encode(packet)[2:]) == packet


@pytest.mark.parametrize("rid", ["a#b", "a+b", "a&retry-after=9", "a$b", "%41"])
def test_any_rid_survives_the_round_trip(rid: str) -> None:
    request = parse_request_topic(sdk_topics.get_register_topic_for_publish(rid))
    assert request.rid == rid
    topic = response_topic(200, request.rid)
    assert "#" not in topic and "+" not in topic
    assert sdk_topics.extract_properties_from_dps_response_topic(topic) == {"rid": rid}
