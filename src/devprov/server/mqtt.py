"""DPS over MQTT: one session type driven by a TLS listener (8883) or a WebSocket (443).

The session is the thin loop around the sans-I/O codec: it feeds bytes to `ServerConnection`,
turns DPS publications into calls on the one registration service, and publishes the answers on
the response topic, with the same JSON bodies as HTTPS (ASCII only: the Node SDK decodes them
as ASCII). Who may connect is decided at CONNECT (see `MqttSession._connect`).

Idle connections cost little: a TLS connection is an `asyncio.Protocol` with a small session and
one timer for its keep-alive, and no task of its own.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import uuid
from collections.abc import Callable, Coroutine
from typing import Any

from aiohttp import WSMsgType, web
from cryptography import x509

from devprov.attestation.attested import Attested
from devprov.domain.errors import INTERNAL_ERROR, DpsError, bad_request
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
from devprov.server.trust import peer_chain

log = logging.getLogger(__name__)
MAX_REQUESTS_IN_PROGRESS = 8
MAX_HELD_BEFORE_CONNACK = 16
CONNECT_TIMEOUT_SECONDS = 30.0


class MqttSession:
    """One device's MQTT connection, whatever carries its bytes."""

    def __init__(
        self,
        registrations: RegistrationService,
        max_message_bytes: int,
        write: Callable[[bytes], None],
        close: Callable[[], None],
        certificates: tuple[x509.Certificate, ...] = (),
    ) -> None:
        self.registrations = registrations
        self.certificates = certificates
        self.max_message_bytes = max_message_bytes
        self.connection = mqtt.ServerConnection(max_packet_bytes=max_message_bytes + 4096)
        self._write = write
        self._close = close
        self.identity: Identity | None = None
        self.password: str | None = None
        self.attested: Attested | None = None
        self._held: list[mqtt.Packet] = []
        self._requests: set[asyncio.Task[None]] = set()
        self._last_seen = asyncio.get_running_loop().time()
        self._timer: asyncio.TimerHandle | None = None
        self._watch(CONNECT_TIMEOUT_SECONDS)

    def data_received(self, data: bytes) -> None:
        self._last_seen = asyncio.get_running_loop().time()
        try:
            for packet in self.connection.receive_data(data):
                self._handle(packet)
        except mqtt.ProtocolError as error:
            log.info("MQTT protocol error from %s: %s", self._who(), error)
            if error.connack_code is not None and self.connection.state is mqtt.State.CONNECTING:
                self._write(self.connection.send(mqtt.ConnAck(error.connack_code)))
            self.close()
        if self.connection.state is mqtt.State.CLOSED:
            self.close()

    def connection_lost(self) -> None:
        self.connection.close()
        if self._timer is not None:
            self._timer.cancel()
        for task in self._requests:
            task.cancel()

    def close(self) -> None:
        self.connection.close()
        self._close()

    def _who(self) -> str:
        return self.identity.registration_id if self.identity else "an unidentified client"

    def _watch(self, seconds: float | None) -> None:
        """Close the connection after `seconds` of silence (checked when the timer fires)."""
        if self._timer is not None:
            self._timer.cancel()
        if seconds is None:
            return
        loop = asyncio.get_running_loop()

        def check() -> None:
            idle = loop.time() - self._last_seen
            if idle >= seconds:
                log.info("MQTT client %s silent for %.0f s; closing", self._who(), idle)
                self.close()
            else:
                self._timer = loop.call_later(seconds - idle, check)

        self._timer = loop.call_later(seconds, check)

    def _send(self, packet: mqtt.Packet) -> None:
        try:
            self._write(self.connection.send(packet))
        except mqtt.ProtocolError as error:
            log.info("closing MQTT connection of %s: %s", self._who(), error)
            self.close()

    def _handle(self, packet: mqtt.Packet) -> None:
        if isinstance(packet, mqtt.Connect):
            self._start_request(self._connect(packet))
        elif self.connection.state is mqtt.State.CONNECTING:
            if len(self._held) >= MAX_HELD_BEFORE_CONNACK:
                log.info("closing MQTT connection: too many packets before CONNACK")
                self.close()
                return
            self._held.append(packet)  # sent before our CONNACK: handled once accepted
        elif isinstance(packet, mqtt.Subscribe):
            granted = tuple(
                min(qos, 1) if topic == RESPONSE_FILTER else mqtt.SUBSCRIBE_FAILURE
                for topic, qos in packet.topics
            )
            self._send(mqtt.SubAck(packet.packet_id, granted))
        elif isinstance(packet, mqtt.Unsubscribe):
            self._send(mqtt.UnsubAck(packet.packet_id))
        elif isinstance(packet, mqtt.PingReq):
            self._send(mqtt.PingResp())
        elif isinstance(packet, mqtt.Publish):
            self._publication(packet)

    async def _connect(self, packet: mqtt.Connect) -> None:
        """Accept or refuse the CONNECT.

        A malformed user name gets CONNACK 4, a client id that is not the registration id
        CONNACK 2, and a SAS token that proves nothing CONNACK 5 (the Python SDK reports that
        as a CredentialError). Other refusals (a disabled enrollment, say) are answered on the
        request with the Azure error body, whose message says what is wrong.
        """
        try:
            identity = parse_username(packet.username)
        except TopicError as error:
            return self._refuse(mqtt.BAD_USERNAME_OR_PASSWORD, str(error))
        if packet.client_id.lower() != identity.registration_id.lower():
            return self._refuse(
                mqtt.IDENTIFIER_REJECTED,
                f"client id {packet.client_id!r} is not registration id"
                f" {identity.registration_id!r}",
            )
        self.identity = identity
        self.password = packet.password.decode("utf-8", "replace") if packet.password else None
        try:
            self.attested = await self.registrations.attest(
                identity.id_scope, identity.registration_id, self._proof()
            )
        except DpsError as error:
            if error.status == 401:
                return self._refuse(mqtt.NOT_AUTHORIZED, error.message)
        if self.connection.state is not mqtt.State.CONNECTING:
            return None
        self._send(mqtt.ConnAck(mqtt.ACCEPTED))
        self._watch(self.connection.keep_alive_timeout)
        if (current := asyncio.current_task()) is not None:
            self._requests.discard(current)  # held requests below count on their own
        held, self._held = self._held, []
        for waiting in held:
            self._handle(waiting)
        return None

    def _proof(self) -> DeviceProof:
        return DeviceProof(authorization=self.password, certificates=self.certificates)

    def _refuse(self, return_code: int, reason: str) -> None:
        log.info("MQTT CONNECT refused (%d): %s", return_code, reason)
        if self.connection.state is mqtt.State.CONNECTING:
            self._send(mqtt.ConnAck(return_code))
        self.close()

    def _publication(self, packet: mqtt.Publish) -> None:
        if packet.qos == 1 and packet.packet_id is not None:
            self._send(mqtt.PubAck(packet.packet_id))
        try:
            topic = parse_request_topic(packet.topic)
        except TopicError as error:
            log.info("closing MQTT connection of %s: %s", self._who(), error)
            self.close()
            return
        if len(self._requests) >= MAX_REQUESTS_IN_PROGRESS:
            log.info("closing MQTT connection of %s: too many requests at once", self._who())
            self.close()
            return
        self._start_request(self._answer(topic, packet.payload))

    def _start_request(self, work: Coroutine[Any, Any, None]) -> None:
        task = asyncio.create_task(work)
        self._requests.add(task)
        task.add_done_callback(self._requests.discard)

    async def _answer(self, topic: RegisterTopic | StatusTopic, payload: bytes) -> None:
        assert self.identity is not None
        identity = self.identity
        retry_after: int | None = None
        try:
            result = await self._call(topic, identity, payload)
            status, body = (202 if result.pending else 200), result.body
            retry_after = result.retry_after
        except DpsError as error:
            status, body = error.status, error_body(error, str(uuid.uuid4()))
        except Exception:
            log.exception("MQTT request of %s failed", identity.registration_id)
            internal = DpsError(500, INTERNAL_ERROR, "Internal error; see the server log.")
            status, body = internal.status, error_body(internal, str(uuid.uuid4()))
        if self.connection.state is mqtt.State.CONNECTED:
            data = json.dumps(body, separators=(",", ":")).encode("ascii")
            self._send(mqtt.Publish(response_topic(status, topic.rid, retry_after), data, qos=1))

    async def _call(
        self, topic: RegisterTopic | StatusTopic, identity: Identity, payload: bytes
    ) -> OperationResult:
        attested = self.attested or await self.registrations.attest(
            identity.id_scope, identity.registration_id, self._proof()
        )
        if isinstance(topic, RegisterTopic):
            request = parse_register_body(payload, self.max_message_bytes)
            return await self.registrations.start(attested, request)
        return await self.registrations.poll(attested, topic.operation_id)


class MqttTlsProtocol(asyncio.Protocol):
    """Carries a session over a TLS socket (the MQTT port)."""

    def __init__(self, registrations: RegistrationService, max_message_bytes: int) -> None:
        self.registrations = registrations
        self.max_message_bytes = max_message_bytes
        self.session: MqttSession | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.session = MqttSession(
            self.registrations,
            self.max_message_bytes,
            transport.write,
            transport.close,
            tuple(peer_chain(transport.get_extra_info("ssl_object"))),
        )

    def data_received(self, data: bytes) -> None:
        if self.session is not None:
            self.session.data_received(data)

    def connection_lost(self, exc: Exception | None) -> None:
        if self.session is not None:
            self.session.connection_lost()


def websocket_subprotocol(request: web.Request) -> str | None:
    """The client's `mqtt` subprotocol, spelt as it offered it (the C SDK says `MQTT`)."""
    offered = request.headers.get("Sec-WebSocket-Protocol", "")
    return next((p.strip() for p in offered.split(",") if p.strip().lower() == "mqtt"), None)


async def serve_websocket(
    request: web.Request, registrations: RegistrationService, max_message_bytes: int
) -> web.StreamResponse:
    """MQTT over WebSocket at /$iothub/websocket: binary messages carry MQTT bytes."""
    subprotocol = websocket_subprotocol(request)
    if subprotocol is None:
        raise bad_request("MQTT over WebSocket needs the subprotocol 'mqtt'.")
    socket = web.WebSocketResponse(
        protocols=(subprotocol,), max_msg_size=max_message_bytes + 8192, heartbeat=None
    )
    await socket.prepare(request)
    outgoing: asyncio.Queue[bytes | None] = asyncio.Queue()
    ssl_object = request.transport.get_extra_info("ssl_object") if request.transport else None
    session = MqttSession(
        registrations,
        max_message_bytes,
        outgoing.put_nowait,
        lambda: outgoing.put_nowait(None),
        tuple(peer_chain(ssl_object)),
    )

    async def pump() -> None:
        while (data := await outgoing.get()) is not None:
            await socket.send_bytes(data)
        await socket.close()

    sender = asyncio.create_task(pump())
    try:
        async for message in socket:
            if message.type == WSMsgType.BINARY:
                session.data_received(message.data)
            elif message.type in (WSMsgType.TEXT, WSMsgType.ERROR):
                break
    finally:
        session.connection_lost()
        outgoing.put_nowait(None)
        with contextlib.suppress(Exception):
            await sender
    return socket
