"""The generator's clients, kept minimal so the generator costs little: HTTP/1.1 and MQTT."""

from __future__ import annotations

import asyncio
import json
import ssl
from typing import Any
from urllib.parse import parse_qs

from devprov.protocol import mqtt

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


def client_context(ca_file: str) -> ssl.SSLContext:
    context = ssl.create_default_context(cafile=ca_file)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    return context
