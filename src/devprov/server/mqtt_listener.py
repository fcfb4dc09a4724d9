"""Carrying MQTT sessions: over TLS on the MQTT port, and over WebSocket at /$iothub/websocket."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Sequence

from aiohttp import WSMsgType, web

from devprov.domain.errors import bad_request
from devprov.server.guard import Outbox
from devprov.server.mqtt_session import DEFAULT_LIMITS as DEFAULT_SESSION_LIMITS
from devprov.server.mqtt_session import (
    MqttApplication,
    MqttSession,
    OpenSessions,
    Peer,
    SessionLimits,
)
from devprov.server.trust import peer_chain

DROP_BUFFERED_BYTES = 4 * 1024 * 1024
"""A client whose unsent packets pass this (it reads nothing, yet is sent to) is dropped."""


class MqttTlsProtocol(asyncio.Protocol):
    """Carries a session over a TLS socket (the MQTT port).

    Flow control: while the transport's unsent bytes are over its high-water mark (a client
    that does not read its answers), the client is not read either, so it cannot ask for
    more; one that is still sent more than `DROP_BUFFERED_BYTES` is dropped."""

    def __init__(
        self,
        applications: Sequence[MqttApplication],
        max_packet_bytes: int,
        open_sessions: OpenSessions | None = None,
        limits: SessionLimits = DEFAULT_SESSION_LIMITS,
    ) -> None:
        self.applications = applications
        self.max_packet_bytes = max_packet_bytes
        self.open_sessions = open_sessions
        self.limits = limits
        self.session: MqttSession | None = None
        self.transport: asyncio.Transport | None = None
        self.paused = False
        self.pauses = 0
        self.peak_buffered = 0
        self.writes = 0
        """The most unsent bytes this connection held (for tests and figures)."""

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport
        peer = Peer(tuple(peer_chain(transport.get_extra_info("ssl_object"))))
        self.session = MqttSession(
            self.applications,
            self._write,
            transport.close,
            peer,
            self.max_packet_bytes,
            self.open_sessions,
            self.limits,
        )

    def _write(self, data: bytes) -> None:
        transport = self.transport
        if transport is None or transport.is_closing():
            return
        transport.write(data)
        self.writes += 1
        buffered = transport.get_write_buffer_size()
        self.peak_buffered = max(self.peak_buffered, buffered)
        if buffered > DROP_BUFFERED_BYTES:
            transport.abort()

    def pause_writing(self) -> None:
        self.paused = True
        self.pauses += 1
        if self.transport is not None and not self.transport.is_closing():
            self.transport.pause_reading()

    def resume_writing(self) -> None:
        self.paused = False
        if self.transport is not None and not self.transport.is_closing():
            self.transport.resume_reading()

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
    request: web.Request,
    applications: Sequence[MqttApplication],
    max_packet_bytes: int,
    open_sessions: OpenSessions | None = None,
    limits: SessionLimits = DEFAULT_SESSION_LIMITS,
    outbox: Outbox | None = None,
) -> web.StreamResponse:
    """MQTT over WebSocket: binary messages carry MQTT bytes. While the answers the client has
    not read pass the outbox's high-water mark, its next message is not read."""
    subprotocol = websocket_subprotocol(request)
    if subprotocol is None:
        raise bad_request(
            "A WebSocket here needs the subprotocol 'mqtt' (MQTT) or 'AMQPWSB10' (AMQP)."
        )
    # A WebSocket message may carry up to a whole packet of any application.
    largest = max(app.max_packet_bytes for app in applications)
    socket = web.WebSocketResponse(
        protocols=(subprotocol,), max_msg_size=largest + 4096, heartbeat=None
    )
    await socket.prepare(request)
    outgoing = outbox or Outbox()
    ssl_object = request.transport.get_extra_info("ssl_object") if request.transport else None
    session = MqttSession(
        applications,
        outgoing.put,
        outgoing.end,
        Peer(tuple(peer_chain(ssl_object)), transport="mqtt-ws"),
        max_packet_bytes,
        open_sessions,
        limits,
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
                await outgoing.room()
            elif message.type in (WSMsgType.TEXT, WSMsgType.ERROR):
                break
    finally:
        session.connection_lost()
        outgoing.end()
        with contextlib.suppress(Exception):
            await sender
    return socket
