"""Carrying MQTT sessions: over TLS on the MQTT port, and over WebSocket at /$iothub/websocket."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Sequence

from aiohttp import WSMsgType, web

from devprov.domain.errors import bad_request
from devprov.server.mqtt_session import MqttApplication, MqttSession, OpenSessions, Peer
from devprov.server.trust import peer_chain


class MqttTlsProtocol(asyncio.Protocol):
    """Carries a session over a TLS socket (the MQTT port)."""

    def __init__(
        self,
        applications: Sequence[MqttApplication],
        max_packet_bytes: int,
        open_sessions: OpenSessions | None = None,
    ) -> None:
        self.applications = applications
        self.max_packet_bytes = max_packet_bytes
        self.open_sessions = open_sessions
        self.session: MqttSession | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        peer = Peer(tuple(peer_chain(transport.get_extra_info("ssl_object"))))
        self.session = MqttSession(
            self.applications,
            transport.write,
            transport.close,
            peer,
            self.max_packet_bytes,
            self.open_sessions,
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
    request: web.Request,
    applications: Sequence[MqttApplication],
    max_packet_bytes: int,
    open_sessions: OpenSessions | None = None,
) -> web.StreamResponse:
    """MQTT over WebSocket: binary messages carry MQTT bytes."""
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
    outgoing: asyncio.Queue[bytes | None] = asyncio.Queue()
    ssl_object = request.transport.get_extra_info("ssl_object") if request.transport else None
    session = MqttSession(
        applications,
        outgoing.put_nowait,
        lambda: outgoing.put_nowait(None),
        Peer(tuple(peer_chain(ssl_object)), transport="mqtt-ws"),
        max_packet_bytes,
        open_sessions,
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
