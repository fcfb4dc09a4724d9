"""IoT Hub over MQTT: the CONNECT user name and the topics and filters of a device (sans-I/O).

What a device may publish and subscribe to, and the topics the hub publishes to it. Section
numbers refer to iothub-device-mqtt.md. Two rules shape everything here. Device and
module ids travel unencoded in the user name and topics (the SDKs never encode them, §2.2), so
they are matched as literal prefixes, never split on `?`, `=` or `&`. And the `$iothub/...`
topics are the same literal strings for every device (§4 item 5), so a request is tied to a
device by the connection it came on, never by its topic: the caller passes the authenticated
device id in.

One module on purpose (under 400 lines): the user name, the topics a device may use and the
topics the hub answers on are one table in the protocol, and read best side by side with it.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from urllib.parse import quote, unquote

# The request ids devices choose are short: Python and Node send a UUID (36 characters), the C SDK
# a decimal uint16, azure-sdk-for-c names like "get_twin". 128 leaves room for any client while
# keeping every response topic tiny, far below MQTT's 65,535-byte limit on a topic.
MAX_RID_LENGTH = 128
MAX_TOPIC_BYTES = 65535

TWIN_RESPONSE_FILTER = "$iothub/twin/res/#"
DESIRED_PATCH_FILTER = "$iothub/twin/PATCH/properties/desired/#"
METHOD_REQUEST_FILTER = "$iothub/methods/POST/#"

_TWIN_GET_PREFIX = "$iothub/twin/GET/?"
_REPORTED_PREFIX = "$iothub/twin/PATCH/properties/reported/?"
_METHOD_RESPONSE = re.compile(r"\$iothub/methods/res/(-?[0-9]{1,10})/\?(.*)", re.DOTALL)
_INT32 = range(-(2**31), 2**31)
_SYSTEM_PREFIX = "$."
# Identity-registry ids: at most 128 of ASCII alphanumerics and - . % _ * ? ! ( ) , : = @ $ '
# (DOC-REG; its newest revision drops + and #, which no MQTT topic could carry anyway).
_ID = re.compile(r"[A-Za-z0-9\-.%_*?!(),:=@$']{1,128}")
_CONTROL = re.compile("[\x00-\x1f\x7f-\x9f]")
# Characters a method name may not have, since IoT Hub sends it unencoded: `/` and `?` would
# move the boundaries the SDKs split topics on, `#` and `+` are MQTT wildcards, `%` would be
# decoded by the Python SDK, `&` would start a query pair, and Node's url.parse escapes spaces.
_METHOD_NAME_FORBIDDEN = re.compile(r"[/?#+%&\s\x00-\x1f\x7f-\x9f]")


class HubTopicError(ValueError):
    """A user name, topic or topic filter the built-in IoT Hub does not accept."""


@dataclass(frozen=True)
class HubIdentity:
    """What a hub CONNECT says: the hub, the identity (from ClientId) and two query options."""

    hub_host_name: str
    device_id: str
    module_id: str | None
    api_version: str | None
    model_id: str | None


@dataclass(frozen=True)
class Telemetry:
    """`devices/{id}/messages/events/{bag}`: application properties and `$.`-system properties.

    Keys and values are URL-decoded; a key without `=` has the value None (§3.1).
    """

    properties: dict[str, str | None]
    system_properties: dict[str, str]


@dataclass(frozen=True)
class TwinGet:
    """`$iothub/twin/GET/?$rid={rid}`; `rid` is as it appeared in the topic, to echo verbatim."""

    rid: str


@dataclass(frozen=True)
class ReportedPatch:
    """`$iothub/twin/PATCH/properties/reported/?$rid={rid}`; the payload is the JSON patch."""

    rid: str


@dataclass(frozen=True)
class MethodResponse:
    """`$iothub/methods/res/{status}/?$rid={rid}`: a device's answer to a direct method."""

    status: int
    rid: str


DevicePublish = Telemetry | TwinGet | ReportedPatch | MethodResponse


# CONNECT ---------------------------------------------------------------------------------------


def looks_like_hub_username(username: str | None) -> bool:
    """True for a hub CONNECT (`{host}/{clientId}/?...`), False for DPS (`{idScope}/registrations`).

    §2.6: a hub host name has a dot (the C SDK even requires one, §1) and an id scope such as
    `0ne00000001` has none, so one MQTT listener can tell the two apart on the first segment.
    """
    if not username:
        return False
    host, slash, _ = username.partition("/")
    return bool(slash) and "." in host


def parse_hub_username(
    username: str | None, client_id: str, *, hub_host_name: str | None = None
) -> HubIdentity:
    """Read a hub CONNECT as §2.2's server parsing rule says.

    The ClientId is the identity (`deviceId` or `deviceId/moduleId`); the user name must start
    with `{host}/{clientId}/`; of the rest (after an optional `?`) only `api-version` and
    `model-id` are read. `DeviceClientType` and anything else is ignored: it changes with every
    SDK, Python and OS upgrade. With `hub_host_name`, the host must be that one, compared
    without regard to case.
    """
    device_id, module_id = _client_id_parts(client_id)
    if not username:
        raise HubTopicError("the user name is required: {hubHostName}/{clientId}/?api-version=...")
    host, slash, rest = username.partition("/")
    if not slash or not host:
        raise HubTopicError(f"the user name {username!r} is not {{hubHostName}}/{{clientId}}/...")
    if hub_host_name is not None and host.lower() != hub_host_name.lower():
        raise HubTopicError(f"the user name is for the hub {host!r}, not {hub_host_name!r}")
    if not rest.startswith(client_id + "/"):
        raise HubTopicError(
            f"the user name {username!r} does not continue with the client id {client_id!r}"
            " and a '/' after the host name"
        )
    remainder = rest[len(client_id) + 1 :]
    if "/" in remainder.partition("?")[0]:
        # `{host}/dev1/mod1/?...` with ClientId `dev1`: a module's user name on a device's
        # connection, or the reverse.
        raise HubTopicError(
            f"the user name {username!r} has more path after the client id {client_id!r}"
        )
    options = _query_options(remainder.removeprefix("?"), ("api-version", "model-id"))
    return HubIdentity(
        host, device_id, module_id, options.get("api-version"), options.get("model-id")
    )


def _client_id_parts(client_id: str) -> tuple[str, str | None]:
    parts = client_id.split("/") if client_id else []
    if len(parts) not in (1, 2) or not all(_ID.fullmatch(part) for part in parts):
        raise HubTopicError(
            f"the client id {client_id!r} is not deviceId or deviceId/moduleId: ids are 1 to 128"
            " of A-Z a-z 0-9 - . % _ * ? ! ( ) , : = @ $ '"
        )
    return parts[0], parts[1] if len(parts) == 2 else None


def _query_options(query: str, names: tuple[str, ...]) -> dict[str, str]:
    """The first non-empty value of each of `names`, URL-decoded (Python encodes the model id,
    Node sends it raw: `dtmi%3Acom%3Aexample%3AThermostat%3B1` and `dtmi:com:example:...`)."""
    found: dict[str, str] = {}
    for pair in query.split("&"):
        key, _, value = pair.partition("=")
        if key in names and key not in found and value:
            found[key] = _decoded(value, "user name")
    return found


# Device publications ---------------------------------------------------------------------------


def parse_device_publish(topic: str, device_id: str, module_id: str | None = None) -> DevicePublish:
    """Recognise what the authenticated device (or module) may publish; refuse everything else.

    Telemetry must be on this identity's own events topic; twin and method topics must carry a
    `$rid`. Another device's topics, a module topic on a device connection (or the reverse) and
    any other `$iothub/...` topic raise HubTopicError.
    """
    events = _events_prefix(device_id, module_id)
    if topic.startswith(events) or topic == events.removesuffix("/"):
        # §3: Node and C end an output-event topic with one more '/'.
        bag = topic[len(events) :].removesuffix("/")
        properties, system_properties = decode_property_bag(bag)
        return Telemetry(properties, system_properties)
    if topic.startswith(_TWIN_GET_PREFIX):
        return TwinGet(_rid(topic, topic[len(_TWIN_GET_PREFIX) :]))
    if topic.startswith(_REPORTED_PREFIX):
        return ReportedPatch(_rid(topic, topic[len(_REPORTED_PREFIX) :]))
    method_response = _METHOD_RESPONSE.fullmatch(topic)
    if method_response:
        status = int(method_response.group(1))
        if status not in _INT32:
            raise HubTopicError(f"the method response status in {topic!r} is not a 32-bit integer")
        return MethodResponse(status, _rid(topic, method_response.group(2)))
    whose = f"module {device_id}/{module_id}" if module_id else f"device {device_id}"
    raise HubTopicError(f"IoT Hub does not accept publications to {topic!r} from {whose}")


def _events_prefix(device_id: str, module_id: str | None) -> str:
    if module_id is None:
        return f"devices/{device_id}/messages/events/"
    return f"devices/{device_id}/modules/{module_id}/messages/events/"


def _rid(topic: str, query: str) -> str:
    """The one `$rid` of a request topic's query, exactly as sent.

    It is kept still URL-encoded, so the response carries back the very characters the device
    sent whatever encoding it used (the Python SDK percent-encodes its rid, Node and C send it
    raw). The key may arrive as `$rid` or `%24rid`.
    """
    rids = [value for key, _, value in _pairs(query) if _decoded(key, "topic") == "$rid"]
    if len(rids) > 1:
        raise HubTopicError(f"the topic {topic!r} has more than one $rid")
    if not rids or not rids[0]:
        raise HubTopicError(f"the topic {topic!r} has no $rid")
    _check_rid(rids[0])
    return rids[0]


def _pairs(query: str) -> list[tuple[str, str, str]]:
    return [pair.partition("=") for pair in query.split("&") if pair]


# Property bags ---------------------------------------------------------------------------------


def decode_property_bag(bag: str) -> tuple[dict[str, str | None], dict[str, str]]:
    """Split a telemetry property bag into application and system (`$.xxx`) properties.

    §3.1: `key=value&...`, URL-encoded; `key` alone is a None value, `key=` an empty string.
    Keys are decoded before they are classified, so `%24.mid` and `$.mid` are the same. Decoding
    uses plain `unquote`: `+` stays a plus (the Python SDK's own warning). A system property
    without `=` has no value to carry and is left out; empty pairs (`a=1&&b=2`) are skipped; a
    repeated key keeps its last value.
    """
    properties: dict[str, str | None] = {}
    system_properties: dict[str, str] = {}
    for raw_key, equals, raw_value in _pairs(bag):
        key = _decoded(raw_key, "property bag")
        if not key:
            raise HubTopicError(f"the property bag {bag!r} has a value without a key")
        value = _decoded(raw_value, "property bag") if equals else None
        if key.startswith(_SYSTEM_PREFIX):
            if value is not None:
                system_properties[key] = value
        else:
            properties[key] = value
    return properties, system_properties


def encode_property_bag(
    properties: Mapping[str, str | None], system_properties: Mapping[str, str]
) -> str:
    """The bag for a hub-to-device message: system properties first, every key and value
    percent-encoded with no safe characters, so `$.mid` goes out as `%24.mid` (the only form the
    C SDK recognises, §3.1) and `/`, `&`, `=`, `#`, `+` can never change the topic's shape."""
    pairs: list[str] = []
    for key, value in system_properties.items():
        if not key.startswith(_SYSTEM_PREFIX) or key == _SYSTEM_PREFIX:
            raise HubTopicError(f"system property names start with '$.': {key!r}")
        pairs.append(f"{_encoded(key)}={_encoded(value)}")
    for key, maybe in properties.items():
        if not key or key.startswith(_SYSTEM_PREFIX):
            raise HubTopicError(
                f"application property names are not empty and do not start with '$.': {key!r}"
            )
        pairs.append(_encoded(key) if maybe is None else f"{_encoded(key)}={_encoded(maybe)}")
    return "&".join(pairs)


def _encoded(text: str) -> str:
    try:
        return quote(text, safe="")
    except UnicodeEncodeError as error:
        raise HubTopicError(f"{text!r} has no UTF-8 form (a lone surrogate)") from error


def _decoded(text: str, where: str) -> str:
    try:
        return unquote(text, errors="strict")
    except UnicodeDecodeError as error:
        raise HubTopicError(f"the {where} has a %-escape that is not UTF-8: {text!r}") from error


# Subscriptions ---------------------------------------------------------------------------------


def subscription_allowed(topic_filter: str, device_id: str, module_id: str | None = None) -> bool:
    """Whether a device (or module) may subscribe to `topic_filter`: only the filters the SDKs use.

    Devices: `devices/{id}/messages/devicebound/#` (Python, Node, C, C#) and the three shared
    `$iothub/...` filters. Modules: `devices/{d}/modules/{m}/inputs/#` (Python, Node), and the
    C SDK's `devices/{d}/modules/{m}/#` and `devices/{d}/modules/{m}/messages/devicebound/#`.
    Another identity's filters, `#`, and `+` wildcards are refused.

    That includes `devices/+/messages/devicebound/#`, which the embedded azure-sdk-for-c
    subscribes to (`AZ_IOT_HUB_CLIENT_C2D_SUBSCRIBE_TOPIC`) and IoT Hub scopes to the
    connection: until the hub decides to read it that way, such devices get no C2D messages.
    """
    if topic_filter in (TWIN_RESPONSE_FILTER, DESIRED_PATCH_FILTER, METHOD_REQUEST_FILTER):
        return True
    if not _ID.fullmatch(device_id) or (module_id is not None and not _ID.fullmatch(module_id)):
        return False
    if module_id is None:
        return topic_filter == f"devices/{device_id}/messages/devicebound/#"
    base = f"devices/{device_id}/modules/{module_id}/"
    return topic_filter in (f"{base}inputs/#", f"{base}#", f"{base}messages/devicebound/#")


# Hub publications ------------------------------------------------------------------------------


def twin_response_topic(status: int, rid: str, version: int | None = None) -> str:
    """`$iothub/twin/res/{status}/?$rid={rid}[&$version={version}]` (§3, reported patch: 204).

    `$rid` comes first and every pair has its `=`: the C SDK reads the number right after
    `?$rid=`, and the Python SDK's `_extract_properties` takes `pair[1]` unguarded (§3.1).
    """
    if not 100 <= status <= 999:
        raise HubTopicError(f"a twin response status has three digits, not {status}")
    _check_rid(rid)
    topic = f"$iothub/twin/res/{status}/?$rid={rid}"
    if version is not None:
        topic += f"&$version={_version(version)}"
    return topic


def desired_patch_topic(version: int) -> str:
    """`$iothub/twin/PATCH/properties/desired/?$version={version}`; the body has `$version` too."""
    return f"$iothub/twin/PATCH/properties/desired/?$version={_version(version)}"


def method_request_topic(method_name: str, rid: str) -> str:
    """`$iothub/methods/POST/{methodName}/?$rid={rid}`, nothing after the rid.

    The C SDK takes everything after `?$rid=` up to the next `/` as the request id, so no other
    pair may follow. The name goes out as it is (the C SDK does not decode it), so names with
    characters that would need encoding are refused.
    """
    if not method_name or _METHOD_NAME_FORBIDDEN.search(method_name):
        raise HubTopicError(
            f"the method name {method_name!r} is empty or has a character that cannot travel"
            " unencoded in a topic (/ ? # + % &, whitespace or control characters)"
        )
    _check_rid(rid)
    if "/" in rid:
        raise HubTopicError(f"the C SDK would cut the $rid {rid!r} at its '/'")
    return _bounded(f"$iothub/methods/POST/{method_name}/?$rid={rid}")


def c2d_topic(
    device_id: str,
    properties: Mapping[str, str | None],
    system_properties: Mapping[str, str],
) -> str:
    """`devices/{id}/messages/devicebound/{bag}` for a cloud-to-device message (§3, §3.1).

    Put `iothub-ack` in `properties`, system ones such as `$.mid`, `$.to`, `$.ce` in
    `system_properties`.
    """
    if not _ID.fullmatch(device_id):
        raise HubTopicError(f"the device id {device_id!r} cannot be part of a topic")
    bag = encode_property_bag(properties, system_properties)
    return _bounded(f"devices/{device_id}/messages/devicebound/{bag}")


def _check_rid(rid: str) -> None:
    """A `$rid` the hub can echo: 1 to MAX_RID_LENGTH characters, none of them a control
    character, `&` (it would end the pair), or `#`/`+` (MQTT wildcards, never valid in a
    topic). Everything else is echoed as the device sent it."""
    if not rid or len(rid) > MAX_RID_LENGTH:
        raise HubTopicError(f"a $rid has 1 to {MAX_RID_LENGTH} characters, not {len(rid)}")
    if _CONTROL.search(rid) or any(c in rid for c in "&#+"):
        raise HubTopicError(f"the $rid {rid!r} has a control character, '&', '#' or '+'")


def _version(version: int) -> int:
    if isinstance(version, bool) or not isinstance(version, int) or version < 0:
        raise HubTopicError(f"a $version is a non-negative integer, not {version!r}")
    return version


def _bounded(topic: str) -> str:
    if len(topic.encode()) > MAX_TOPIC_BYTES:
        raise HubTopicError(f"the topic would be longer than {MAX_TOPIC_BYTES} bytes")
    return topic
