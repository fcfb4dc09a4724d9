"""Carrying AMQP sessions: over TLS on the AMQP port, and over WebSocket at /$iothub/websocket.

Over WebSocket (subprotocol `AMQPWSB10`) each binary message is a slice of the AMQP byte stream:
the SDKs split headers and frames across messages wherever their writes fall.
"""

from __future__ import annotations

import asyncio
import contextlib

from aiohttp import WSMsgType, web

from devprov.server.amqp_session import DEFAULT_LIMITS, AmqpLimits, AmqpSession
from devprov.server.dps_amqp import DpsAmqp
from devprov.server.guard import Outbox
from devprov.server.mqtt_session import Peer
from devprov.server.trust import peer_chain

WEBSOCKET_SUBPROTOCOL = "AMQPWSB10"


class AmqpTlsProtocol(asyncio.Protocol):
    """Carries a session over a TLS socket (the AMQP port); not read while its unsent
    bytes are over the transport's high-water mark (a client that does not read)."""

    def __init__(self, application: DpsAmqp, limits: AmqpLimits = DEFAULT_LIMITS) -> None:
        self.application = application
        self.limits = limits
        self.session: AmqpSession | None = None
        self.transport: asyncio.Transport | None = None
        self.pauses = 0

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport
        peer = Peer(tuple(peer_chain(transport.get_extra_info("ssl_object"))))
        connection, client = self.application.connection(peer)
        self.session = AmqpSession(
            connection, client, transport.write, transport.close, self.limits
        )

    def pause_writing(self) -> None:
        self.pauses += 1
        if self.transport is not None and not self.transport.is_closing():
            self.transport.pause_reading()

    def resume_writing(self) -> None:
        if self.transport is not None and not self.transport.is_closing():
            self.transport.resume_reading()

    def data_received(self, data: bytes) -> None:
        if self.session is not None:
            self.session.data_received(data)

    def connection_lost(self, exc: Exception | None) -> None:
        if self.session is not None:
            self.session.connection_lost()


def offers_amqp(request: web.Request) -> bool:
    """Whether a WebSocket upgrade offers the AMQP subprotocol."""
    offered = request.headers.get("Sec-WebSocket-Protocol", "")
    return any(p.strip().lower() == WEBSOCKET_SUBPROTOCOL.lower() for p in offered.split(","))


async def serve_websocket(
    request: web.Request,
    application: DpsAmqp,
    limits: AmqpLimits = DEFAULT_LIMITS,
    outbox: Outbox | None = None,
) -> web.StreamResponse:
    """AMQP over WebSocket: binary messages carry AMQP bytes (not read while the answers the
    client has not read pass the outbox's high-water mark)."""
    socket = web.WebSocketResponse(
        protocols=(WEBSOCKET_SUBPROTOCOL,),
        max_msg_size=application.max_message_bytes + 64 * 1024,
        heartbeat=None,
    )
    await socket.prepare(request)
    outgoing = outbox or Outbox()
    ssl_object = request.transport.get_extra_info("ssl_object") if request.transport else None
    connection, client = application.connection(Peer(tuple(peer_chain(ssl_object))))
    session = AmqpSession(connection, client, outgoing.put, outgoing.end, limits)

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
