"""The built-in IoT hub as an MQTT application: devices connect, read and report their twin,
receive desired-property changes and direct methods, and send telemetry.

It claims every CONNECT whose user name is IoT Hub's (`{hubHostName}/{deviceId}/?...`) and
translates to the hub service (hub/service.py). A device may only use its own topics: anything
else closes its connection. Responses reach only the connection they belong to, since each
device's `$iothub/...` topics are the same strings (iothub-device-mqtt.md §4.5).
"""

from __future__ import annotations

import asyncio
import itertools
import json
import logging
import time
import uuid
from collections.abc import Coroutine
from typing import Any

from devprov.domain.clock import now_timestamp
from devprov.domain.errors import DpsError
from devprov.domain.hub_identities import HubError
from devprov.domain.json_text import JsonRefused, parse_json
from devprov.hub.auth import DeviceCredentials
from devprov.hub.service import HubService
from devprov.protocol import iothub_mqtt as topics
from devprov.protocol import mqtt
from devprov.server.mqtt_session import Link, Peer, Refusal

log = logging.getLogger(__name__)
# Telemetry messages are up to 256 KB (iothub-device-mqtt.md §3), plus topic and header.
MAX_PACKET_BYTES = 256 * 1024 + 4096
# The embedded C SDK (azure-sdk-for-c) subscribes with a wildcard IoT Hub scopes to the
# connection's own device: it means "my cloud-to-device messages".
EMBEDDED_C2D_FILTER = "devices/+/messages/devicebound/#"


class HubMqtt:
    """Serves IoT Hub's device MQTT for every built-in hub."""

    max_packet_bytes = MAX_PACKET_BYTES

    def __init__(self, hubs: HubService) -> None:
        self.hubs = hubs

    def claims(self, connect: mqtt.Connect) -> bool:
        return topics.looks_like_hub_username(connect.username)

    async def accept(self, connect: mqtt.Connect, peer: Peer, link: Link) -> HubClient:
        """A malformed user name gets CONNACK 4; an unknown hub or device, a disabled one,
        and credentials that are not the device's get CONNACK 5 (as IoT Hub answers)."""
        try:
            identity = topics.parse_hub_username(connect.username, connect.client_id)
        except topics.HubTopicError as error:
            raise Refusal(mqtt.BAD_USERNAME_OR_PASSWORD, str(error)) from None
        if identity.module_id is not None:
            raise Refusal(mqtt.NOT_AUTHORIZED, "devprov's hub has no module identities")
        password = connect.password.decode("utf-8", "replace") if connect.password else None
        credentials = DeviceCredentials(password, peer.certificates)
        try:
            hub, expiry = await self.hubs.connect(
                identity.hub_host_name, identity.device_id, credentials
            )
        except DpsError as error:
            raise Refusal(mqtt.NOT_AUTHORIZED, error.message) from None
        client = HubClient(self.hubs, hub.host_name, identity.device_id, link)
        self.hubs.presence.attach(hub.host_name, identity.device_id, client)
        if expiry is not None:
            client.expire_at(expiry)
        return client


class HubClient:
    """One device's connection to a built-in hub: its subscriptions and pending method calls."""

    def __init__(self, hubs: HubService, hub: str, device_id: str, link: Link) -> None:
        self.hubs = hubs
        self.hub = hub
        self.device_id = device_id
        self.link = link
        self.subscribed: dict[str, int] = {}  # "twin", "desired", "methods", "c2d": QoS
        self._calls: dict[str, asyncio.Future[tuple[int, Any]]] = {}
        self._rids = itertools.count(1)
        self._expiry: asyncio.TimerHandle | None = None

    @property
    def name(self) -> str:
        return f"{self.device_id} on {self.hub}"

    # Subscriptions and publications from the device -------------------------------------------

    def subscribe(self, topic_filter: str, qos: int) -> int:
        kind = _FILTERS.get(topic_filter)
        if kind is None and topic_filter in (
            f"devices/{self.device_id}/messages/devicebound/#",
            EMBEDDED_C2D_FILTER,
        ):
            kind = "c2d"
        if kind is None or not (
            topic_filter == EMBEDDED_C2D_FILTER
            or topics.subscription_allowed(topic_filter, self.device_id)
        ):
            self.link.close(f"{self.name} may not subscribe to {topic_filter!r}")
            return mqtt.SUBSCRIBE_FAILURE
        self.subscribed[kind] = min(qos, 1)
        return self.subscribed[kind]

    def publication(self, packet: mqtt.Publish) -> Coroutine[Any, Any, None] | None:
        request = topics.parse_device_publish(packet.topic, self.device_id)
        if isinstance(request, topics.Telemetry):
            self.hubs.telemetry(
                self.hub,
                self.device_id,
                request.properties,
                request.system_properties,
                packet.payload,
            )
            return None
        if isinstance(request, topics.TwinGet):
            return self._twin_get(request.rid)
        if isinstance(request, topics.ReportedPatch):
            return self._report(request.rid, packet.payload)
        self._method_answered(request, packet.payload)
        return None

    def closed(self) -> None:
        self.hubs.presence.detach(self.hub, self.device_id, self)
        if self._expiry is not None:
            self._expiry.cancel()
        for call in self._calls.values():
            if not call.done():
                call.set_exception(_not_online(self.device_id))

    def expire_at(self, epoch_seconds: float) -> None:
        """IoT Hub closes a connection when its token expires; the SDKs reconnect before."""
        delay = max(0.0, epoch_seconds - time.time())
        self._expiry = asyncio.get_running_loop().call_later(
            delay, self.link.close, f"the token of {self.name} expired"
        )

    async def _twin_get(self, rid: str) -> None:
        try:
            twin = await self.hubs.device_twin(self.hub, self.device_id)
        except DpsError as error:
            return self._twin_answer(error.status, rid, _error_body(error))
        self._twin_answer(200, rid, _json(twin))

    async def _report(self, rid: str, payload: bytes) -> None:
        try:
            patch = parse_json(payload)
        except JsonRefused as refused:
            error = DpsError(
                400, 400004, f"The reported-properties patch is not valid JSON: {refused}."
            )
            return self._twin_answer(400, rid, _error_body(error))
        try:
            version = await self.hubs.report(self.hub, self.device_id, patch)
        except DpsError as error:
            return self._twin_answer(error.status, rid, _error_body(error))
        self._twin_answer(204, rid, b"", version)

    def _twin_answer(self, status: int, rid: str, body: bytes, version: int | None = None) -> None:
        qos = self.subscribed.get("twin", 0)
        self.link.publish(topics.twin_response_topic(status, rid, version), body, qos)

    # What the service side asks of the device ------------------------------------------------

    def push_desired(self, delta: dict[str, Any]) -> None:
        if "desired" in self.subscribed:
            topic = topics.desired_patch_topic(delta["$version"])
            self.link.publish(topic, _json(delta), self.subscribed["desired"])

    async def invoke(self, method: str, payload: Any, wait_seconds: float) -> tuple[int, Any]:
        if "methods" not in self.subscribed:
            raise _not_online(self.device_id, "has not subscribed to direct methods")
        rid = format(next(self._rids), "x")
        try:
            topic = topics.method_request_topic(method, rid)
        except topics.HubTopicError as error:
            raise HubError(400, "ArgumentInvalid", 400004, str(error)) from None
        call: asyncio.Future[tuple[int, Any]] = asyncio.get_running_loop().create_future()
        self._calls[rid] = call
        try:
            self.link.publish(topic, json.dumps(payload).encode(), self.subscribed["methods"])
            return await asyncio.wait_for(call, wait_seconds)
        except TimeoutError:
            raise HubError(
                504,
                "GatewayTimeoutException",
                504101,
                f"Device {self.device_id} did not answer {method!r} within {wait_seconds:g} s.",
            ) from None
        finally:
            self._calls.pop(rid, None)

    def _method_answered(self, answer: topics.MethodResponse, payload: bytes) -> None:
        call = self._calls.get(answer.rid)
        if call is None or call.done():
            log.info("%s answered a method call that is not waiting: %s", self.name, answer.rid)
            return
        try:
            body: Any = parse_json(payload) if payload.strip() else None
        except JsonRefused:
            body = payload.decode("utf-8", "replace")
        call.set_result((answer.status, body))

    def disconnect(self, reason: str) -> None:
        self.link.close(f"{self.name}: {reason}")


_FILTERS = {
    topics.TWIN_RESPONSE_FILTER: "twin",
    topics.DESIRED_PATCH_FILTER: "desired",
    topics.METHOD_REQUEST_FILTER: "methods",
}


def _not_online(device_id: str, why: str = "is not connected") -> HubError:
    return HubError(404, "DeviceNotOnline", 404103, f"Device {device_id} {why}.")


def _json(value: Any) -> bytes:
    return json.dumps(value, separators=(",", ":")).encode("ascii")


def _error_body(error: DpsError) -> bytes:
    """The Node SDK takes a twin response as an error only when its body has `errorCode`."""
    return _json(
        {
            "errorCode": error.error_code,
            "message": error.message,
            "trackingId": str(uuid.uuid4()),
            "timestampUtc": now_timestamp(),
        }
    )
