"""IoT Hub over MQTT: user names, device publications, subscriptions and the hub's topics.

Where the Python SDK has a helper, the test calls it (its own topic builders and parsers);
the Node and C SDKs' constructions and parsers are re-stated from iothub-device-mqtt.md §2-3.
"""

from __future__ import annotations

import uuid
from typing import Any
from urllib.parse import parse_qs, quote, urlencode

import pytest
from azure.iot.device import Message as SdkMessage
from azure.iot.device.iothub.pipeline import mqtt_topic_iothub
from hypothesis import given
from hypothesis import strategies as st

from devprov.protocol import mqtt
from devprov.protocol.iothub_mqtt import (
    DESIRED_PATCH_FILTER,
    MAX_RID_LENGTH,
    METHOD_REQUEST_FILTER,
    TWIN_RESPONSE_FILTER,
    HubIdentity,
    HubTopicError,
    MethodResponse,
    ReportedPatch,
    Telemetry,
    TwinGet,
    c2d_topic,
    decode_property_bag,
    desired_patch_topic,
    encode_property_bag,
    looks_like_hub_username,
    method_request_topic,
    parse_device_publish,
    parse_hub_username,
    subscription_allowed,
    twin_response_topic,
)

sdk: Any = mqtt_topic_iothub  # the Python SDK's own topic helpers (untyped)
Message: Any = SdkMessage  # untyped too
HOST = "hub.example.net"
PY_AGENT = "azure-iot-device-iothub-py/2.14.0(3.11.7;Linux 6.1.0-13-amd64;x86_64)"
THERMOSTAT = "dtmi:com:example:Thermostat;1"


def python_username(client_id: str, model_id: str | None = None) -> str:
    """pipeline_stages_iothub_mqtt: urlencode with quote; a dtmi product_info means PnP."""
    if model_id:
        query = [("api-version", "2020-09-30"), ("DeviceClientType", PY_AGENT)]
        query.append(("model-id", model_id))
    else:
        query = [("api-version", "2019-10-01"), ("DeviceClientType", PY_AGENT)]
    return f"{HOST}/{client_id}/?{urlencode(query, quote_via=quote)}"


def node_username(client_id: str, model_id: str | None = None) -> str:
    """mqtt.ts: model-id (raw) before DeviceClientType (encodeURIComponent)."""
    model = f"&model-id={model_id}" if model_id else ""
    agent = quote("azure-iot-device/1.18.0 (node v18.19.0; Ubuntu 22.04; x64)", safe="()")
    return f"{HOST}/{client_id}/?api-version=2021-04-12{model}&DeviceClientType={agent}"


# CONNECT ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("username", "api_version", "model_id"),
    [
        (python_username("dev1"), "2019-10-01", None),
        (python_username("dev1", THERMOSTAT), "2020-09-30", THERMOSTAT),
        (node_username("dev1"), "2021-04-12", None),
        (node_username("dev1", THERMOSTAT), "2021-04-12", THERMOSTAT),
        # C SDK: "%s.%s/%s/" then "%s?api-version=%s&DeviceClientType=%s"[&model-id=]
        (
            f"{HOST}/dev1/?api-version=2020-09-30&DeviceClientType=iothubclient%2f1.11.0"
            f"&model-id={quote(THERMOSTAT, safe='')}",
            "2020-09-30",
            THERMOSTAT,
        ),
        (f"{HOST}/dev1/?api-version=2021-04-12", "2021-04-12", None),  # the docs' raw MQTT
        (f"{HOST}/dev1/", None, None),
        (f"{HOST}/dev1/?api-version=&model-id=", None, None),
    ],
    ids=["python", "python-pnp", "node", "node-pnp", "c", "docs", "bare", "empty-values"],
)
def test_the_username_of_each_sdk(username: str, api_version: str, model_id: str | None) -> None:
    assert parse_hub_username(username, "dev1") == HubIdentity(
        HOST, "dev1", None, api_version, model_id
    )


def test_a_module_username() -> None:
    username = f"{HOST}/dev1/mod-a/?api-version=2021-04-12"
    identity = parse_hub_username(username, "dev1/mod-a")
    assert (identity.device_id, identity.module_id) == ("dev1", "mod-a")


@pytest.mark.parametrize(
    "device_id", ["dev?api-version=1999-01-01", "a=b?model-id=x", "$dev", "50%25off", "a:b@c'(!)*"]
)
def test_device_ids_are_never_split_on_query_characters(device_id: str) -> None:
    """SDKs send ids unencoded (§2.2): the id comes from ClientId, the options after it."""
    for username in (python_username(device_id), node_username(device_id, THERMOSTAT)):
        identity = parse_hub_username(username, device_id)
        assert identity.device_id == device_id
        assert identity.api_version in ("2019-10-01", "2021-04-12")
        assert identity.model_id in (None, THERMOSTAT)


def test_the_host_is_compared_without_case() -> None:
    identity = parse_hub_username(python_username("dev1"), "dev1", hub_host_name="HUB.Example.NET")
    assert identity.hub_host_name == HOST
    with pytest.raises(HubTopicError, match="is for the hub"):
        parse_hub_username(python_username("dev1"), "dev1", hub_host_name="other.example.net")


@pytest.mark.parametrize(
    ("username", "client_id"),
    [
        (None, "dev1"),
        ("", "dev1"),
        (HOST, "dev1"),
        ("/dev1/?api-version=2021-04-12", "dev1"),
        (f"{HOST}/dev2/?api-version=2021-04-12", "dev1"),  # someone else's id
        (f"{HOST}/dev10/?api-version=2021-04-12", "dev1"),  # a longer id is not a match
        (f"{HOST}/dev1?api-version=2021-04-12", "dev1"),  # no '/' after the id
        (f"{HOST}/dev1", "dev1"),
        (f"{HOST}/dev1/mod/?api-version=2021-04-12", "dev1"),  # a module name, a device id
        (f"{HOST}/dev1/?api-version=2021-04-12", ""),
        (f"{HOST}/a/b/c/?api-version=2021-04-12", "a/b/c"),
        (f"{HOST}/dev 1/?api-version=2021-04-12", "dev 1"),
        (f"{HOST}/dev#1/?api-version=2021-04-12", "dev#1"),  # DOC-REG: + and # not supported
        (f"{HOST}/{'x' * 129}/", "x" * 129),
    ],
)
def test_usernames_that_do_not_fit_the_client_id_are_refused(
    username: str | None, client_id: str
) -> None:
    with pytest.raises(HubTopicError):
        parse_hub_username(username, client_id)


@pytest.mark.parametrize(
    ("username", "hub"),
    [
        (python_username("dev1"), True),
        (node_username("registrations"), True),
        (f"{HOST}/dev1/?api-version=2021-04-12", True),
        # DPS: Python / C provisioning user names (§2.6)
        ("0ne00000001/registrations/dev1/api-version=2019-03-31&ClientVersion=1.13.0", False),
        ("0ne00000001/registrations/dev.1/api-version=2019-03-31", False),
        ("localhost/dev1/?api-version=2021-04-12", False),
        (HOST, False),
        ("", False),
        (None, False),
    ],
)
def test_telling_a_hub_connect_from_a_dps_connect(username: str | None, hub: bool) -> None:
    assert looks_like_hub_username(username) is hub


# Device publications ---------------------------------------------------------------------------


def python_telemetry_topic(device_id: str, message: Any, module_id: str | None = None) -> str:
    base = sdk.get_telemetry_topic_for_publish(device_id, module_id)
    return str(sdk.encode_message_properties_in_topic(message, base))


def test_python_sdk_telemetry_with_system_and_application_properties() -> None:
    message = Message(b"{}", message_id="m 1", content_type="application/json")
    message.content_encoding = "utf-8"
    message.custom_properties = {"temp alert": "high&hot", "empty": "", "sum": "1+1=2"}
    topic = python_telemetry_topic("dev1", message)

    assert parse_device_publish(topic, "dev1") == Telemetry(
        {"temp alert": "high&hot", "empty": "", "sum": "1+1=2"},
        {"$.mid": "m 1", "$.ct": "application/json", "$.ce": "utf-8"},
    )


@pytest.mark.parametrize(
    "topic",
    [
        "devices/dev1/messages/events/%24.mid=1&%24.ct=application%2Fjson&k=v",  # Python, Node
        "devices/dev1/messages/events/k=v&%24.mid=1&%24.ct=application%2Fjson",  # C: user first
        "devices/dev1/messages/events/$.mid=1&$.ct=application/json&k=v",  # raw MQTT clients
        "devices/dev1/messages/events/$.mid=1&&$.ct=application%2Fjson&k=v&",
    ],
)
def test_system_properties_arrive_encoded_or_not(topic: str) -> None:
    assert parse_device_publish(topic, "dev1") == Telemetry(
        {"k": "v"}, {"$.mid": "1", "$.ct": "application/json"}
    )


def test_property_bag_values_none_empty_and_plus() -> None:
    topic = "devices/dev1/messages/events/flag&empty=&plus=a+b&pct=50%&$.cid"
    assert parse_device_publish(topic, "dev1") == Telemetry(
        {"flag": None, "empty": "", "plus": "a+b", "pct": "50%"}, {}
    )


@pytest.mark.parametrize("topic", ["devices/dev1/messages/events/", "devices/dev1/messages/events"])
def test_telemetry_without_properties(topic: str) -> None:
    assert parse_device_publish(topic, "dev1") == Telemetry({}, {})


@pytest.mark.parametrize("device_id", ["dev$1", "a=b", "dev?x=1", "50%25off"])
def test_telemetry_of_devices_with_query_characters_in_their_id(device_id: str) -> None:
    topic = python_telemetry_topic(device_id, Message(b"", message_id="m"))
    assert parse_device_publish(topic, device_id) == Telemetry({}, {"$.mid": "m"})


def test_module_output_events_with_the_trailing_slash() -> None:
    """Node and C end an output event with '/' after `$.on` (§3)."""
    topic = "devices/dev1/modules/mod-a/messages/events/%24.on=alerts/"
    assert parse_device_publish(topic, "dev1", "mod-a") == Telemetry({}, {"$.on": "alerts"})
    message = Message(b"")
    message.output_name = "alerts"
    python = python_telemetry_topic("dev1", message, "mod-a")
    assert parse_device_publish(python, "dev1", "mod-a") == Telemetry({}, {"$.on": "alerts"})


UUID = "1b1e0a4c-4d2f-4c1b-9e5e-000000000001"


@pytest.mark.parametrize(
    ("topic", "rid"),
    [
        (sdk.get_twin_topic_for_publish("GET", "/", UUID), UUID),  # Python
        ("$iothub/twin/" + "GET" + "/" + "?$rid=" + UUID, UUID),  # Node
        ("$iothub/twin/GET/?$rid=65534", "65534"),  # C: decimal uint16
        ("$iothub/twin/GET/?$rid=get_twin", "get_twin"),  # azure-sdk-for-c
        ("$iothub/twin/GET/?%24rid=7&other=1", "7"),
    ],
)
def test_twin_get_of_each_sdk(topic: str, rid: str) -> None:
    assert parse_device_publish(topic, "dev1") == TwinGet(rid)


def test_reported_patch_of_each_sdk() -> None:
    rid = str(uuid.uuid4())
    python = sdk.get_twin_topic_for_publish("PATCH", "/properties/reported/", rid)
    node = "$iothub/twin/" + "PATCH" + "/properties/reported/" + "?$rid=" + rid
    assert parse_device_publish(python, "dev1") == ReportedPatch(rid)
    assert parse_device_publish(node, "dev1") == ReportedPatch(rid)
    c_sdk = "$iothub/twin/PATCH/properties/reported/?$rid=3"
    assert parse_device_publish(c_sdk, "dev1") == ReportedPatch("3")


@pytest.mark.parametrize("status", [200, 404, 500, -1, 2147483647, -2147483648])
def test_method_responses(status: int) -> None:
    rid = str(uuid.uuid4())
    topic = sdk.get_method_topic_for_publish(rid, status)
    assert parse_device_publish(topic, "dev1") == MethodResponse(status, rid)


@pytest.mark.parametrize("rid", ["a b/c", "x&$version=9", "%41", "名前", "a#b+c"])
def test_the_rid_comes_back_exactly_as_the_python_sdk_encoded_it(rid: str) -> None:
    request = parse_device_publish(sdk.get_twin_topic_for_publish("GET", "/", rid), "dev1")
    assert isinstance(request, TwinGet)
    topic = twin_response_topic(200, request.rid)
    assert sdk.get_twin_request_id_from_topic(topic) == rid
    assert "#" not in topic and "+" not in topic


@pytest.mark.parametrize(
    ("topic", "problem"),
    [
        ("$iothub/twin/GET/?", "no $rid"),
        ("$iothub/twin/GET/?$rid=", "no $rid"),
        ("$iothub/twin/GET/?rid=1", "no $rid"),
        ("$iothub/twin/PATCH/properties/reported/?$version=3", "no $rid"),
        ("$iothub/twin/GET/?$rid=1&$rid=2", "more than one $rid"),
        ("$iothub/methods/res/200/?", "no $rid"),
        (f"$iothub/twin/GET/?$rid={'r' * (MAX_RID_LENGTH + 1)}", "1 to 128 characters"),
        ("$iothub/twin/GET/?$rid=a\x01", "control character"),
        ("$iothub/methods/res/2147483648/?$rid=1", "not a 32-bit integer"),
    ],
)
def test_request_topics_need_one_usable_rid(topic: str, problem: str) -> None:
    with pytest.raises(HubTopicError, match=problem.replace("$", r"\$")):
        parse_device_publish(topic, "dev1")


@pytest.mark.parametrize(
    ("topic", "module_id"),
    [
        ("devices/dev2/messages/events/", None),  # another device's telemetry
        ("devices/dev10/messages/events/", None),
        ("devices/dev/messages/events/", None),
        ("devices/dev1/modules/mod-a/messages/events/", None),  # a module topic, a device
        ("devices/dev1/messages/events/", "mod-a"),  # a device topic, a module
        ("devices/dev1/modules/mod-b/messages/events/", "mod-a"),
        ("devices/dev1/messages/eventsX", None),
        ("devices/dev1/messages/devicebound/", None),
        ("devices/dev1/modules/mod-a/inputs/in1/", "mod-a"),
        ("$iothub/twin/PATCH/properties/desired/?$rid=1", None),
        ("$iothub/twin/res/200/?$rid=1", None),
        ("$iothub/methods/POST/reboot/?$rid=1", None),
        ("$iothub/methods/res/abc/?$rid=1", None),
        ("$iothub/twin/GET?$rid=1", None),
        ("$iothub/twin/GET/$rid=1", None),
        ("$IOTHUB/twin/GET/?$rid=1", None),
        ("$iothub/credentials/POST/issueCertificate/?$rid=1", None),
        ("$dps/registrations/PUT/iotdps-register/?$rid=1", None),
        ("", None),
    ],
)
def test_foreign_and_unknown_topics_are_refused(topic: str, module_id: str | None) -> None:
    with pytest.raises(HubTopicError):
        parse_device_publish(topic, "dev1", module_id)


@pytest.mark.parametrize(
    "topic",
    [
        "devices/dev1/messages/events/=value",
        "devices/dev1/messages/events/k=%FF",
        "devices/dev1/messages/events/%C3=v",
    ],
)
def test_malformed_property_bags_are_refused(topic: str) -> None:
    with pytest.raises(HubTopicError):
        parse_device_publish(topic, "dev1")


# Subscriptions ---------------------------------------------------------------------------------


def test_the_filters_the_sdks_subscribe_to_are_allowed() -> None:
    for device_id in ("dev1", "dev$=?%1"):
        for topic_filter in (
            sdk.get_c2d_topic_for_subscribe(device_id),
            sdk.get_method_topic_for_subscribe(),
            sdk.get_twin_response_topic_for_subscribe(),
            sdk.get_twin_patch_topic_for_subscribe(),
        ):
            assert subscription_allowed(topic_filter, device_id)
    assert {TWIN_RESPONSE_FILTER, DESIRED_PATCH_FILTER, METHOD_REQUEST_FILTER} == {
        "$iothub/twin/res/#",
        "$iothub/twin/PATCH/properties/desired/#",
        "$iothub/methods/POST/#",
    }


@pytest.mark.parametrize(
    "topic_filter",
    [
        "devices/dev1/modules/mod-a/inputs/#",  # Python, Node
        "devices/dev1/modules/mod-a/#",  # C: TOPIC_INPUT_QUEUE_NAME
        "devices/dev1/modules/mod-a/messages/devicebound/#",  # C: TOPIC_DEVICE_MODULE_MSG
        "$iothub/methods/POST/#",
    ],
)
def test_module_filters_are_allowed_for_that_module(topic_filter: str) -> None:
    assert subscription_allowed(topic_filter, "dev1", "mod-a")
    assert sdk.get_input_topic_for_subscribe("dev1", "mod-a") == (
        "devices/dev1/modules/mod-a/inputs/#"
    )


@pytest.mark.parametrize(
    ("topic_filter", "module_id"),
    [
        ("#", None),
        ("$iothub/#", None),
        ("$iothub/twin/#", None),
        ("$iothub/twin/res/+", None),
        ("devices/#", None),
        ("devices/+/messages/devicebound/#", None),  # azure-sdk-for-c's; see the docstring
        ("devices/dev2/messages/devicebound/#", None),
        ("devices/dev10/messages/devicebound/#", None),
        ("devices/dev1/messages/devicebound", None),
        ("devices/dev1/messages/events/#", None),
        ("devices/dev1/modules/mod-a/inputs/#", None),  # a device asking for a module's
        ("devices/dev1/messages/devicebound/#", "mod-a"),  # a module asking for its device's
        ("devices/dev1/modules/mod-b/inputs/#", "mod-a"),
        ("devices/dev1/modules/+/inputs/#", "mod-a"),
    ],
)
def test_other_filters_are_refused(topic_filter: str, module_id: str | None) -> None:
    assert not subscription_allowed(topic_filter, "dev1", module_id)


# Hub publications ------------------------------------------------------------------------------


def test_twin_response_topics_as_the_doc_shows_them() -> None:
    assert twin_response_topic(200, "1") == "$iothub/twin/res/200/?$rid=1"
    assert twin_response_topic(204, "1", 6) == "$iothub/twin/res/204/?$rid=1&$version=6"
    assert twin_response_topic(400, "1") == "$iothub/twin/res/400/?$rid=1"


@pytest.mark.parametrize("version", [None, 7])
def test_each_sdk_reads_our_twin_response(version: int | None) -> None:
    rid = str(uuid.uuid4())
    topic = twin_response_topic(204, rid, version)
    # Python
    assert sdk.is_twin_response_topic(topic)
    assert sdk.get_twin_request_id_from_topic(topic) == rid
    assert sdk.get_twin_status_code_from_topic(topic) == "204"
    # Node: url.parse, path parts, querystring.parse(query).$rid
    path, query = topic.split("?", 1)
    assert path.split("/")[:4] == ["$iothub", "twin", "res", "204"]
    assert parse_qs(query)["$rid"] == [rid]
    # C: atol on the fourth '/'-token, then the number after "/?$rid="
    assert twin_response_topic(200, "65534", version).split("/")[3] == "200"
    after = twin_response_topic(200, "65534", version).split("?$rid=")[1]
    assert after[: len(after) - len(after.lstrip("0123456789"))] == "65534"


def test_desired_patch_topic() -> None:
    topic = desired_patch_topic(8)
    assert topic == "$iothub/twin/PATCH/properties/desired/?$version=8"
    assert sdk.is_twin_desired_property_patch_topic(topic)
    assert topic.startswith(DESIRED_PATCH_FILTER.removesuffix("#"))


@pytest.mark.parametrize("name", ["reboot", "thermostat*getMaxMinReport", "set-Fan_Speed.v2"])
def test_method_request_topic_as_the_sdks_read_it(name: str) -> None:
    topic = method_request_topic(name, "1f")
    assert topic == f"$iothub/methods/POST/{name}/?$rid=1f"
    assert sdk.is_method_topic(topic)
    assert sdk.get_method_name_from_topic(topic) == name
    assert sdk.get_method_request_id_from_topic(topic) == "1f"
    assert topic.split("/")[3] == name  # C: token 3 is the name, token 4 "?$rid=" + rid
    assert topic.split("/")[4] == "?$rid=1f"


@pytest.mark.parametrize("name", ["", "a/b", "a b", "a%41", "a#", "a+b", "a?b", "a&b", "a\nb"])
def test_method_names_that_cannot_travel_unencoded_are_refused(name: str) -> None:
    with pytest.raises(HubTopicError):
        method_request_topic(name, "1")


def test_c2d_topic_as_in_the_doc_and_as_the_python_sdk_reads_it() -> None:
    mid = "d411e727-a64f-4c6c-bf2f-22d2f3a3c6d2"
    topic = c2d_topic(
        "mqtt-dev-01",
        {"iothub-ack": "none", "property1": "value 1/2"},
        {"$.mid": mid, "$.to": "/devices/mqtt-dev-01/messages/devicebound", "$.ce": "utf-8"},
    )
    assert topic == (
        f"devices/mqtt-dev-01/messages/devicebound/%24.mid={mid}"
        "&%24.to=%2Fdevices%2Fmqtt-dev-01%2Fmessages%2Fdevicebound&%24.ce=utf-8"
        "&iothub-ack=none&property1=value%201%2F2"
    )
    assert sdk.is_c2d_topic(topic, "mqtt-dev-01")
    message = Message(b"")
    sdk.extract_message_properties_from_topic(topic, message)
    assert (message.message_id, message.content_encoding, message.ack) == (mid, "utf-8", "none")
    assert message.custom_properties == {"property1": "value 1/2"}
    assert len(topic.split("/")) == 5  # Node reads the bag as the fifth '/'-segment


@pytest.mark.parametrize(
    ("device_id", "properties", "system_properties"),
    [
        ("dev#1", {}, {}),
        ("", {}, {}),
        ("dev1", {"$.mid": "1"}, {}),
        ("dev1", {"": "1"}, {}),
        ("dev1", {}, {"mid": "1"}),
        ("dev1", {}, {"$.": "1"}),
        ("dev1", {"k": "\ud800"}, {}),
        ("dev1", {"big": "x" * 70000}, {}),
    ],
)
def test_c2d_topics_that_cannot_be_built_are_refused(
    device_id: str, properties: dict[str, str | None], system_properties: dict[str, str]
) -> None:
    with pytest.raises(HubTopicError):
        c2d_topic(device_id, properties, system_properties)


def test_rids_are_bounded_so_topics_stay_small() -> None:
    longest = "r" * MAX_RID_LENGTH
    assert twin_response_topic(200, longest).endswith(longest)
    assert parse_device_publish(f"$iothub/twin/GET/?$rid={longest}", "dev1") == TwinGet(longest)
    for bad in ("r" * (MAX_RID_LENGTH + 1), "", "a&b", "a#", "a+b"):
        with pytest.raises(HubTopicError):
            twin_response_topic(200, bad)
    with pytest.raises(HubTopicError):
        method_request_topic("reboot", "a/b")  # the C SDK would cut it at the '/'
    with pytest.raises(HubTopicError):
        twin_response_topic(200, "1", -1)
    with pytest.raises(HubTopicError):
        desired_patch_topic(True)


def test_hub_topics_are_valid_publish_topics() -> None:
    for topic in (
        twin_response_topic(200, str(uuid.uuid4()), 3),
        desired_patch_topic(2),
        method_request_topic("reboot", "1"),
        c2d_topic("dev1", {"a#b": "c+d"}, {"$.mid": "1"}),
    ):
        packet = mqtt.Publish(topic, b"{}", 1, 1)
        assert mqtt.decode(3, 0x02, mqtt.encode(packet)[2:]) == packet


def test_topic_error_is_a_value_error() -> None:
    assert issubclass(HubTopicError, ValueError)


# Property bag round trips ----------------------------------------------------------------------

names = st.text(min_size=1).filter(lambda key: not key.startswith("$."))
values = st.text()


@given(
    properties=st.dictionaries(names, st.none() | values, max_size=5),
    system_properties=st.dictionaries(
        st.text(min_size=1).map(lambda name: "$." + name), values, max_size=4
    ),
)
def test_encode_then_decode_is_the_identity(
    properties: dict[str, str | None], system_properties: dict[str, str]
) -> None:
    bag = encode_property_bag(properties, system_properties)
    assert decode_property_bag(bag) == (properties, system_properties)
    assert not set("/#+") & set(bag)


@given(
    custom=st.dictionaries(names, values, max_size=5),
    message_id=st.none() | st.text(min_size=1),
)
def test_we_read_what_the_python_sdk_sends(custom: dict[str, str], message_id: str | None) -> None:
    message = Message(b"", message_id=message_id)
    message.custom_properties = custom
    topic = python_telemetry_topic("dev1", message)
    expected_system = {"$.mid": message_id} if message_id else {}
    assert parse_device_publish(topic, "dev1") == Telemetry(dict(custom), expected_system)


@given(
    custom=st.dictionaries(names.filter(lambda key: key != "iothub-ack"), values, max_size=5),
    message_id=st.text(min_size=1),
)
def test_the_python_sdk_reads_what_we_send(custom: dict[str, str], message_id: str) -> None:
    topic = c2d_topic("dev1", custom, {"$.mid": message_id})
    message = Message(b"")
    sdk.extract_message_properties_from_topic(topic, message)
    assert (message.message_id, message.custom_properties) == (message_id, custom)
