"""The generator's clients, kept minimal so the generator costs little: HTTP/1.1, MQTT, AMQP."""

from __future__ import annotations

import asyncio
import json
import ssl
from typing import Any
from urllib.parse import parse_qs

from devprov.protocol import mqtt
from devprov.protocol.amqp_frames import (
    AMQP_HEADER,
    FRAME_AMQP,
    FRAME_SASL,
    SASL_HEADER,
    Attach,
    Begin,
    Close,
    Detach,
    End,
    Flow,
    Message,
    Open,
    Performative,
    SaslInit,
    SaslOutcome,
    Transfer,
    decode_body,
    decode_message,
    frame,
    terminus,
)

MAX_PACKET = 1024 * 1024


class WireError(Exception):
    """What went wrong, in a few words fit for an error count."""


async def http_request(
    reader: asyncio.StreamReader,
    writer: asyncio.StreamWriter,
    method: str,
    path: str,
    headers: dict[str, str],
    body: bytes = b"",
) -> tuple[int, dict[str, str], bytes]:
    lines = [f"{method} {path} HTTP/1.1", *(f"{k}: {v}" for k, v in headers.items())]
    lines.append(f"Content-Length: {len(body)}")
    writer.write(("\r\n".join(lines) + "\r\n\r\n").encode() + body)
    head = await reader.readuntil(b"\r\n\r\n")
    status_line, *header_lines = head.decode("latin-1").split("\r\n")
    status = int(status_line.split(" ", 2)[1])
    answer_headers = {}
    for line in header_lines:
        name, _, value = line.partition(":")
        if name:
            answer_headers[name.strip().lower()] = value.strip()
    length = int(answer_headers.get("content-length", "0"))
    return status, answer_headers, await reader.readexactly(length) if length else b""


class MqttClient:
    """Just enough of an MQTT 3.1.1 client for one DPS registration."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer
        self.buffer = bytearray()
        self.packet_id = 0

    async def packet(self) -> mqtt.Packet:
        while (frame := mqtt.take_frame(self.buffer, MAX_PACKET)) is None:
            chunk = await self.reader.read(65536)
            if not chunk:
                raise WireError("connection closed")
            self.buffer += chunk
        return mqtt.decode(*frame)

    def send(self, packet: mqtt.Packet) -> None:
        self.writer.write(mqtt.encode(packet))

    def publish(self, topic: str, payload: bytes) -> None:
        self.packet_id = self.packet_id % 0xFFFF + 1
        self.send(mqtt.Publish(topic, payload, qos=1, packet_id=self.packet_id))

    async def response(self) -> tuple[int, int | None, Any]:
        """The next DPS response: (status, retry-after, body)."""
        while True:
            packet = await self.packet()
            if isinstance(packet, mqtt.Publish):
                if packet.qos:
                    self.send(mqtt.PubAck(packet.packet_id or 0))
                _, _, _, status, rest = packet.topic.split("/", 4)
                query = parse_qs(rest.lstrip("?"))
                retry = int(query["retry-after"][0]) if "retry-after" in query else None
                return int(status), retry, json.loads(packet.payload)


class AmqpClient:
    """Just enough of an AMQP 1.0 client for one DPS registration, step by step as the Node
    SDK takes it (SASL PLAIN, open, begin, a receiver then a sender link, requests)."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer
        self.buffer = bytearray()
        self.delivery = 0

    async def _fill(self, count: int) -> None:
        while len(self.buffer) < count:
            chunk = await self.reader.read(65536)
            if not chunk:
                raise WireError("connection closed")
            self.buffer += chunk

    async def header(self) -> bytes:
        await self._fill(8)
        header = bytes(self.buffer[:8])
        del self.buffer[:8]
        return header

    async def performative(self) -> tuple[Performative, bytes]:
        """The next frame's performative and payload (heartbeats skipped)."""
        while True:
            await self._fill(8)
            size, offset = int.from_bytes(self.buffer[:4], "big"), self.buffer[4]
            await self._fill(size)
            body, kind = bytes(self.buffer[offset * 4 : size]), self.buffer[5]
            del self.buffer[:size]
            if body:
                return decode_body(kind, body)

    async def expect(self, kind: type[Performative]) -> Performative:
        performative, _ = await self.performative()
        if not isinstance(performative, kind):
            raise WireError(f"amqp {type(performative).__name__} instead of {kind.__name__}")
        return performative

    def send(self, performative: Performative, payload: bytes = b"", sasl: bool = False) -> None:
        body = performative.encode() + payload
        self.writer.write(frame(FRAME_SASL if sasl else FRAME_AMQP, 0, body))

    async def connect(self, address: str, token: str) -> None:
        """SASL PLAIN with the token, the connection, the session and both links."""
        self.writer.write(SASL_HEADER)
        await self.header()
        await self.performative()  # the mechanisms
        self.send(
            SaslInit("PLAIN", b"\x00" + address.encode() + b"\x00" + token.encode()), sasl=True
        )
        outcome = await self.expect(SaslOutcome)
        if isinstance(outcome, SaslOutcome) and outcome.code:
            raise WireError("amqp sasl refused")
        self.writer.write(AMQP_HEADER)
        self.send(Open("bench"))
        await self.header()
        await self.expect(Open)
        self.send(Begin(None, 0, 2048, 0xFFFFFFFF))
        await self.expect(Begin)
        self.send(
            Attach("replies", 0, True, source=terminus(0x28, address), target=terminus(0x29, None))
        )
        await self.expect(Attach)
        self.send(Flow(0, 2048, 0, 0xFFFFFFFF, handle=0, delivery_count=0, link_credit=100))
        requests = Attach(
            "requests", 1, False, source=terminus(0x28, None), target=terminus(0x29, address),
            initial_delivery_count=0,
        )  # fmt: skip
        self.send(requests)
        await self.expect(Attach)
        await self.expect(Flow)

    async def request(self, properties: dict[str, Any], body: bytes) -> tuple[int | None, Any]:
        """Send a request; (retry-after, JSON) of its reply, or WireError if rejected."""
        message = Message(
            correlation_id=str(self.delivery), application_properties=properties, data=body
        )
        self.send(Transfer(1, self.delivery, str(self.delivery).encode(), 0), message.encode())
        self.delivery += 1
        while True:
            performative, payload = await self.performative()
            if isinstance(performative, Transfer) and performative.handle == 0:
                reply = decode_message(payload)
                retry = reply.application_properties.get("retry-after")
                return int(retry) if retry is not None else None, json.loads(reply.data or b"{}")
            if isinstance(performative, Flow):
                continue
            state = getattr(performative, "state", None)
            if state is not None and getattr(state, "descriptor", None) != 0x24:
                raise WireError("amqp rejected")

    async def close(self) -> None:
        self.send(Detach(1, closed=True))
        self.send(Detach(0, closed=True))
        self.send(End())
        self.send(Close())
        while not isinstance((await self.performative())[0], Close):
            pass


def client_context(ca_file: str) -> ssl.SSLContext:
    context = ssl.create_default_context(cafile=ca_file)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    return context
