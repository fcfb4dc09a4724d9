"""Peers that stall, trickle, flood or pile up are closed, paused or refused: every listener of a
running devprov, over real TLS, with clients that send a byte at a time."""

from __future__ import annotations

import asyncio
import json
import logging
import socket
import ssl
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest

from devprov.protocol import mqtt
from devprov.server.mqtt_listener import DROP_BUFFERED_BYTES, MqttTlsProtocol
from tests.conftest import Running, start_devprov
from tests.helpers import create_enrollment, device_token, primary_key

WAIT_SECONDS = 20.0  # how long a test waits for what must happen (never what it asserts)
SHORT = 0.5  # the deadlines under test


@pytest.fixture
async def edge(tmp_path: Path) -> AsyncIterator[Running]:
    running = await start_devprov(
        tmp_path / "data",
        f"sqlite:///{tmp_path / 'devprov.db'}",
        tls_handshake_timeout=SHORT,
        http_header_timeout=SHORT,
        http_body_timeout=SHORT,
        http_keepalive_timeout=60.0,  # far away: the deadline under test closes first
        mqtt_connect_timeout=SHORT,
        amqp_open_timeout=SHORT,
        max_connections_per_address=20,
    )
    yield running
    await running.devprov.close()


def tls(running: Running) -> ssl.SSLContext:
    return ssl.create_default_context(cafile=running.ca)


async def dial(
    running: Running, port: int | None = None
) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    return await asyncio.open_connection(
        "localhost", port or running.port, ssl=tls(running), server_hostname="localhost"
    )


async def closed_by_server(reader: asyncio.StreamReader) -> bytes:
    """Everything the server sent until it closed the connection (bounded wait)."""
    received = b""
    async with asyncio.timeout(WAIT_SECONDS):
        while True:
            try:
                chunk = await reader.read(65536)
            except (ConnectionError, ssl.SSLError):
                return received
            if not chunk:
                return received
            received += chunk


async def trickle(writer: asyncio.StreamWriter, data: bytes, gap: float = 0.05) -> int:
    """Send `data` a byte at a time until the server closes; the bytes it took."""
    sent = 0
    for byte in data:
        try:
            writer.write(bytes([byte]))
            await writer.drain()
        except (ConnectionError, ssl.SSLError):
            break
        sent += 1
        if writer.transport.is_closing():
            break
        await asyncio.sleep(gap)
    return sent


def gate_totals(running: Running, name: str) -> dict[str, int]:
    gate = running.devprov.gates[name]
    return dict(gate.closed.totals) | {"refused: " + k: v for k, v in gate.refused.totals.items()}


# TLS --------------------------------------------------------------------------------------


async def test_a_tls_handshake_that_never_finishes_is_closed(edge: Running) -> None:
    reader, writer = await asyncio.open_connection("localhost", edge.port)  # plain TCP
    writer.write(b"\x16\x03\x01")  # the start of a ClientHello, and no more
    assert await closed_by_server(reader) == b""
    writer.close()


# HTTPS ------------------------------------------------------------------------------------


async def test_request_head_trickled_a_byte_at_a_time_is_closed(edge: Running) -> None:
    reader, writer = await dial(edge)
    endless = b"GET /healthz HTTP/1.1\r\nHost: localhost\r\n" + b"X-Slow: " + b"a" * 10_000
    sender = asyncio.create_task(trickle(writer, endless))
    assert await closed_by_server(reader) == b""
    sent = await sender
    assert sent < len(endless)
    assert gate_totals(edge, "https").get("request head timeout", 0) >= 1
    writer.close()


async def test_request_body_trickled_gets_408_in_the_azure_shape_and_is_closed(
    edge: Running,
) -> None:
    reader, writer = await dial(edge)
    path = f"/{edge.id_scope}/registrations/slow-1/register?api-version=2021-06-01"
    writer.write(
        f"PUT {path} HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\n"
        "Content-Length: 5000\r\n\r\n".encode()
    )
    sender = asyncio.create_task(trickle(writer, b"{" + b" " * 4999))
    answer = await closed_by_server(reader)
    await sender
    head, _, body = answer.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 408")
    error = json.loads(body)
    assert error["errorCode"] == 408001
    assert error["trackingId"]
    assert "did not arrive" in error["message"]
    writer.close()


async def test_an_idle_connection_is_closed_after_the_keep_alive_time(tmp_path: Path) -> None:
    running = await start_devprov(
        tmp_path / "data", f"sqlite:///{tmp_path / 'devprov.db'}", http_keepalive_timeout=SHORT
    )
    try:
        reader, writer = await dial(running)
        assert await closed_by_server(reader) == b""  # never sent a request
        reader, writer = await dial(running)
        writer.write(b"GET /healthz HTTP/1.1\r\nHost: localhost\r\n\r\n")
        answer = await closed_by_server(reader)  # answered, then idle
        assert answer.startswith(b"HTTP/1.1 200")
        writer.close()
    finally:
        await running.devprov.close()


@pytest.mark.parametrize(
    "request_head",
    [
        b"GET / HTTP/1.1\r\nHost: localhost\r\nNo colon here\r\n\r\n",
        b"GET / HTTP/1.1\r\nHost: localhost\r\nX-Long: " + b"a" * 20_000 + b"\r\n\r\n",
        b"GET /" + b"a" * 20_000 + b" HTTP/1.1\r\nHost: localhost\r\n\r\n",
        b"PUT / HTTP/1.1\r\nHost: localhost\r\nContent-Length: banana\r\n\r\n",
        b"GET / HTTP/1.1\r\nHost: localhost\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",
        b"\x00\x01\x02 / HTTP/1.1\r\n\r\n",
    ],
    ids=[
        "header-without-colon",
        "header-too-long",
        "line-too-long",
        "bad-length",
        "bad-chunk",
        "bad-method",
    ],
)
async def test_what_the_http_parser_refuses_is_answered_in_the_azure_shape(
    edge: Running, request_head: bytes
) -> None:
    reader, writer = await dial(edge)
    writer.write(request_head)
    answer = await closed_by_server(reader)
    head, _, body = answer.partition(b"\r\n\r\n")
    status = int(head.split(b" ")[1])
    assert 400 <= status < 500, head
    assert b"application/json" in head
    error = json.loads(body)
    assert error["errorCode"] == status * 1000
    assert error["message"].startswith("The request is malformed")
    assert error["trackingId"]
    writer.close()


async def test_a_client_leaving_mid_body_is_not_an_error_with_a_traceback(
    edge: Running, caplog: pytest.LogCaptureFixture
) -> None:
    _, writer = await dial(edge)
    path = f"/{edge.id_scope}/registrations/gone-1/register?api-version=2021-06-01"
    writer.write(
        f"PUT {path} HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\n"
        'Content-Length: 5000\r\n\r\n{"registrationId":'.encode()
    )
    await writer.drain()
    await asyncio.sleep(0.1)
    writer.transport.abort()
    await asyncio.sleep(0.3)
    noisy = [r for r in caplog.records if r.levelno >= logging.ERROR or r.exc_info]
    assert noisy == []


# Caps -------------------------------------------------------------------------------------


async def test_connections_past_the_per_address_cap_are_closed_at_once(edge: Running) -> None:
    held = [await dial(edge) for _ in range(20)]
    reader, _ = await dial(edge)
    assert await closed_by_server(reader) == b""
    assert edge.devprov.gates["https"].open == 20
    assert gate_totals(edge, "https")["refused: over the cap of 20 per address"] == 1
    for _, held_writer in held:
        held_writer.close()


# MQTT -------------------------------------------------------------------------------------


def connect_packet(registration_id: str, password: bytes, id_scope: str) -> bytes:
    return mqtt.encode(
        mqtt.Connect(
            client_id=registration_id,
            keep_alive=60,
            username=f"{id_scope}/registrations/{registration_id}/api-version=2019-03-31",
            password=password,
        )
    )


async def test_a_connect_trickled_a_byte_at_a_time_is_closed_at_the_deadline(
    edge: Running,
) -> None:
    """The deadline runs from accept: bytes arriving meanwhile do not restart it."""
    reader, writer = await dial(edge, edge.devprov.instance.mqtt_port)
    packet = connect_packet("slow-device", b"x" * 200, edge.id_scope)
    sender = asyncio.create_task(trickle(writer, packet, gap=0.02))
    assert await closed_by_server(reader) == b""
    assert await sender < len(packet)
    writer.close()


async def test_an_invalid_registration_id_with_a_junk_password_is_refused(
    edge: Running,
) -> None:
    reader, writer = await dial(edge, edge.devprov.instance.mqtt_port)
    writer.write(connect_packet("not a valid id!", b"junk", edge.id_scope))
    answer = await closed_by_server(reader)
    assert answer == mqtt.encode(mqtt.ConnAck(mqtt.IDENTIFIER_REJECTED))
    writer.close()


async def test_a_client_that_floods_and_never_reads_costs_a_bounded_amount(
    edge: Running,
) -> None:
    """A client that asks (a few requests at a time, as allowed) and never reads the answers
    is paused (not read while its unsent answers are over the transport's high-water mark) or
    dropped (it acknowledges none of them): what the server holds for it stays bounded."""
    await edge.service().link_hub("hub.example")
    enrollment = await create_enrollment(edge, "flooder")
    token = device_token(f"{edge.id_scope}/registrations/flooder", primary_key(enrollment))
    raw = socket.create_connection(("localhost", edge.devprov.instance.mqtt_port))
    raw.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    reader, writer = await asyncio.open_connection(
        sock=raw, ssl=tls(edge), server_hostname="localhost"
    )
    writer.write(connect_packet("flooder", token.encode(), edge.id_scope))
    writer.write(mqtt.encode(mqtt.Subscribe(1, (("$dps/registrations/res/#", 0),))))
    await writer.drain()
    await reader.readexactly(4 + 5)  # CONNACK and SUBACK: the last bytes it reads
    (transport,) = edge.devprov.gates["mqtt"].transports()
    protocol = transport.get_protocol().inner  # type: ignore[attr-defined]
    assert isinstance(protocol, MqttTlsProtocol)
    rid = "r" * 200  # long answers fill the buffers sooner
    topic = f"$dps/registrations/GET/iotdps-get-operationstatus/?$rid={rid}&operationId=nope"
    batch = mqtt.encode(mqtt.Publish(topic, b"", 0)) * 4
    sent = 0
    async with asyncio.timeout(WAIT_SECONDS * 3):
        while sent < 8_000 and not protocol.paused and not transport.is_closing():
            writer.write(batch)
            sent += 4
            answered = 2 + sent  # CONNACK, SUBACK, and one answer a request
            while (  # noqa: ASYNC110
                protocol.writes < answered and not protocol.paused and not transport.is_closing()
            ):
                await asyncio.sleep(0.001)
    assert protocol.paused or transport.is_closing(), f"neither after {sent} requests"
    assert protocol.peak_buffered <= DROP_BUFFERED_BYTES
    writer.transport.abort()


async def test_a_hub_client_that_floods_twin_reads_and_never_reads_is_paused(
    edge: Running,
) -> None:
    """Twin answers at QoS 0 need no acknowledgement: once they pass the high-water mark the
    client is no longer read, so it cannot ask for more, and nothing more is buffered for it."""
    from tests.server.test_hub_mqtt import HUB, Hub, token

    await edge.service().link_hub(HUB)
    hub = Hub(edge)
    key = await hub.add_device("reader-of-nothing")
    desired = {f"p{n}": "d" * 3000 for n in range(8)}  # answers of 24 KB fill buffers soon
    await hub.rest("PATCH", "/twins/reader-of-nothing", {"properties": {"desired": desired}})
    raw = socket.create_connection(("127.0.0.1", edge.devprov.instance.mqtt_port))
    raw.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    reader, writer = await asyncio.open_connection(
        sock=raw, ssl=tls(edge), server_hostname="localhost"
    )
    username = f"{HUB}/reader-of-nothing/?api-version=2021-04-12"
    password = token("reader-of-nothing", key)
    writer.write(mqtt.encode(mqtt.Connect("reader-of-nothing", username, password, keep_alive=60)))
    writer.write(mqtt.encode(mqtt.Subscribe(1, (("$iothub/twin/res/#", 0),))))
    await writer.drain()
    assert await reader.readexactly(4) == mqtt.encode(mqtt.ConnAck(mqtt.ACCEPTED))
    await reader.readexactly(5)  # SUBACK: the last bytes it reads
    (transport,) = edge.devprov.gates["mqtt"].transports()
    protocol = transport.get_protocol().inner  # type: ignore[attr-defined]
    assert isinstance(protocol, MqttTlsProtocol)
    batch = b"".join(
        mqtt.encode(mqtt.Publish(f"$iothub/twin/GET/?$rid={n}", b"", 0)) for n in range(4)
    )
    sent = 0
    async with asyncio.timeout(WAIT_SECONDS * 3):
        while sent < 4_000 and not protocol.paused and not transport.is_closing():
            writer.write(batch)
            sent += 4
            answered = 2 + sent
            while (  # noqa: ASYNC110
                protocol.writes < answered and not protocol.paused and not transport.is_closing()
            ):
                await asyncio.sleep(0.001)
    assert protocol.paused, f"not paused after {sent} twin reads"
    assert not transport.is_closing()
    writes, held = protocol.writes, transport.get_write_buffer_size()
    writer.write(batch * 100)  # more, while paused: not read, so not answered
    await writer.drain()
    await asyncio.sleep(0.5)
    assert protocol.paused
    assert protocol.writes <= writes + 8  # at most the requests already read
    assert transport.get_write_buffer_size() <= held + 8 * 1024
    assert protocol.peak_buffered <= DROP_BUFFERED_BYTES
    writer.transport.abort()


async def test_a_websocket_hub_client_that_never_reads_is_paused(edge: Running) -> None:
    """Over WebSocket the same: past the outbox's high-water mark the client's next message is
    not read, and what devprov holds for it stays under the mark plus one answer."""
    from tests.server.test_hub_mqtt import HUB, Hub, token

    await edge.service().link_hub(HUB)
    hub = Hub(edge)
    key = await hub.add_device("ws-reader-of-nothing")
    desired = {f"p{n}": "d" * 3000 for n in range(8)}
    await hub.rest("PATCH", "/twins/ws-reader-of-nothing", {"properties": {"desired": desired}})
    url = f"https://localhost:{edge.port}/$iothub/websocket"
    connector = aiohttp.TCPConnector(ssl=tls(edge))
    async with (
        aiohttp.ClientSession(connector=connector) as http,
        http.ws_connect(url, protocols=("mqtt",), max_msg_size=0) as socket_,
    ):
        username = f"{HUB}/ws-reader-of-nothing/?api-version=2021-04-12"
        password = token("ws-reader-of-nothing", key)
        await socket_.send_bytes(
            mqtt.encode(mqtt.Connect("ws-reader-of-nothing", username, password, keep_alive=60))
        )
        await socket_.send_bytes(mqtt.encode(mqtt.Subscribe(1, (("$iothub/twin/res/#", 0),))))
        (outbox,) = list(edge.devprov.gates["https"].outboxes)
        get = mqtt.encode(mqtt.Publish("$iothub/twin/GET/?$rid=1", b"", 0))
        sent = 0
        async with asyncio.timeout(WAIT_SECONDS * 3):
            while outbox.pauses == 0 and sent < 4_000:
                await socket_.send_bytes(get)
                sent += 1
                await asyncio.sleep(0.002)
        assert outbox.pauses >= 1, f"not paused after {sent} twin reads"
        for _ in range(200):  # more, while paused: not read, so not answered
            await socket_.send_bytes(get)
        await asyncio.sleep(0.5)
        assert outbox.size <= outbox.high_water + 64 * 1024
        assert outbox.peak <= outbox.high_water + 64 * 1024


# AMQP -------------------------------------------------------------------------------------


async def test_an_amqp_open_trickled_a_byte_at_a_time_is_closed(edge: Running) -> None:
    reader, writer = await dial(edge, edge.devprov.instance.amqp_port)
    header = b"AMQP\x03\x01\x00\x00" + b"\x00" * 1000
    sender = asyncio.create_task(trickle(writer, header, gap=0.02))
    await closed_by_server(reader)
    assert await sender < len(header)
    writer.close()
