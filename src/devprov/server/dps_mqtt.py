"""DPS as an MQTT application: the CONNECT rules, the request topics, and their answers.

Publications become calls on the one registration service; answers go back on the response
topic with the same JSON bodies as HTTPS (ASCII only: the Node SDK decodes them as ASCII).
"""

from __future__ import annotations

import json
import logging
import time
import uuid
from collections.abc import Coroutine
from typing import Any

from devprov.attestation.attested import Attested
from devprov.domain.errors import INTERNAL_ERROR, DpsError
from devprov.protocol import mqtt
from devprov.protocol.dps import error_body, parse_register_body
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
from devprov.registration import DeviceProof, OperationResult, RegistrationService
from devprov.registration.observe import Request, Transport, handling
from devprov.server.mqtt_session import Link, Peer, Refusal

log = logging.getLogger(__name__)
# A DPS packet is the largest device message plus its topic and header.
PACKET_OVERHEAD_BYTES = 4096


class DpsMqtt:
    """Serves DPS's register and operation-status exchange; takes every CONNECT no other
    application claims, so its own user-name rule explains a refusal."""

    def __init__(self, registrations: RegistrationService, max_message_bytes: int) -> None:
        self.registrations = registrations
        self.max_message_bytes = max_message_bytes
        self.max_packet_bytes = max_message_bytes + PACKET_OVERHEAD_BYTES

    def claims(self, connect: mqtt.Connect) -> bool:
        return True

    async def accept(self, connect: mqtt.Connect, peer: Peer, link: Link) -> DpsClient:
        """A malformed user name gets CONNACK 4, a client id that is not the registration id
        CONNACK 2 (so does a registration id that is not valid), and credentials that prove nothing
        CONNACK 5 (the Python SDK reports that
        as a CredentialError). Other refusals (a disabled enrollment, say) are answered on the
        request with the Azure error body, whose message says what is wrong."""
        try:
            identity = parse_username(connect.username)
        except TopicError as error:
            raise Refusal(mqtt.BAD_USERNAME_OR_PASSWORD, str(error)) from None
        if connect.client_id.lower() != identity.registration_id.lower():
            raise Refusal(
                mqtt.IDENTIFIER_REJECTED,
                f"client id {connect.client_id!r} is not registration id"
                f" {identity.registration_id!r}",
            )
        password = connect.password.decode("utf-8", "replace") if connect.password else None
        proof = DeviceProof(authorization=password, certificates=peer.certificates)
        client = DpsClient(self, identity, proof, link, peer.transport)
        try:
            with handling(client.request()):
                client.attested = await self.registrations.attest(
                    identity.id_scope, identity.registration_id, proof
                )
        except DpsError as error:
            if error.status == 401:
                raise Refusal(mqtt.NOT_AUTHORIZED, error.message) from None
            if error.status == 400:  # a registration id no device may have
                raise Refusal(mqtt.IDENTIFIER_REJECTED, error.message) from None
        return client


class DpsClient:
    """One device's DPS session over MQTT."""

    def __init__(
        self,
        application: DpsMqtt,
        identity: Identity,
        proof: DeviceProof,
        link: Link,
        transport: Transport = "mqtt",
    ) -> None:
        self.application = application
        self.identity = identity
        self.proof = proof
        self.link = link
        self.transport = transport
        self.attested: Attested | None = None

    def request(self) -> Request:
        """A new observed request: MQTT has no request id of its own, so each gets a
        trackingId here (the one an error body carries)."""
        return Request(self.transport, str(uuid.uuid4()), time.perf_counter())

    @property
    def name(self) -> str:
        return self.identity.registration_id

    def subscribe(self, topic_filter: str, qos: int) -> int:
        return min(qos, 1) if topic_filter == RESPONSE_FILTER else mqtt.SUBSCRIBE_FAILURE

    def publication(self, packet: mqtt.Publish) -> Coroutine[Any, Any, None]:
        return self._answer(parse_request_topic(packet.topic), packet.payload)

    def closed(self) -> None:
        return None

    async def _answer(self, topic: RegisterTopic | StatusTopic, payload: bytes) -> None:
        retry_after: int | None = None
        request = self.request()
        try:
            with handling(request):
                result = await self._call(topic, payload)
            status, body = (202 if result.pending else 200), result.body
            retry_after = result.retry_after
        except DpsError as error:
            status, body = error.status, error_body(error, request.tracking_id)
            retry_after = error.retry_after
        except Exception:
            log.exception("MQTT request of %s failed", self.name)
            internal = DpsError(500, INTERNAL_ERROR, "Internal error; see the server log.")
            status, body = internal.status, error_body(internal, request.tracking_id)
        data = json.dumps(body, separators=(",", ":")).encode("ascii")
        self.link.publish(response_topic(status, topic.rid, retry_after), data)

    async def _call(self, topic: RegisterTopic | StatusTopic, payload: bytes) -> OperationResult:
        registrations = self.application.registrations
        attested = self.attested or await registrations.attest(
            self.identity.id_scope, self.identity.registration_id, self.proof
        )
        if isinstance(topic, RegisterTopic):
            request = parse_register_body(payload, self.application.max_message_bytes)
            return await registrations.start(attested, request)
        return await registrations.poll(attested, topic.operation_id)
