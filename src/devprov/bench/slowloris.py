"""Slow and idle peers against a devprov: how many it held, how many it closed, and whether a
real client still got in meanwhile (`devprov bench-slowloris`, and the soak tests)."""

from __future__ import annotations

import asyncio
import ssl
import time
from dataclasses import dataclass, field
from typing import Literal

from devprov.bench.load import Target

Attack = Literal["https-head", "https-body", "https-idle", "mqtt-connect"]
ATTACKS: tuple[Attack, ...] = ("https-head", "https-body", "https-idle", "mqtt-connect")
_HEAD = b"GET /healthz HTTP/1.1\r\nHost: localhost\r\nX-Slow: " + b"a" * 100_000
_BODY_HEAD = (
    b"PUT /0ne00000000/registrations/slow/register?api-version=2021-06-01 HTTP/1.1\r\n"
    b"Host: localhost\r\nContent-Type: application/json\r\nContent-Length: 100000\r\n\r\n"
)
# The start of a CONNECT whose remaining length promises more than ever comes.
_CONNECT = b"\x10\xff\x7f\x00\x04MQTT\x04\xc2\x00\x3c" + b"\x00" * 100_000


@dataclass
class SlowResult:
    attack: Attack
    connections: int
    opened: int = 0
    closed_by_server: int = 0
    seconds: float = 0.0
    """From the last peer open to the count."""
    probe_ok: bool = False
    """A fresh client's request answered while the attack went on."""
    failures: list[str] = field(default_factory=list)

    @property
    def held(self) -> int:
        return self.opened - self.closed_by_server


async def _peer(
    target: Target,
    attack: Attack,
    gap: float,
    stop: asyncio.Event,
    result: SlowResult,
    dialled: asyncio.Future[None],
) -> None:
    port = target.mqtt_port if attack == "mqtt-connect" else target.https_port
    try:
        reader, writer = await asyncio.open_connection(
            target.host, port, ssl=target.context, server_hostname="localhost"
        )
    except (OSError, ssl.SSLError) as error:
        result.failures.append(type(error).__name__)
        dialled.set_result(None)
        return
    result.opened += 1
    dialled.set_result(None)
    data = {"https-head": _HEAD, "https-body": _BODY_HEAD, "mqtt-connect": _CONNECT}.get(attack)
    if attack == "https-body":
        writer.write(_BODY_HEAD)
        data = b"{" + b" " * 99_999
    closed = asyncio.create_task(_until_closed(reader))
    try:
        for byte in data or b"":
            if stop.is_set() or closed.done():
                break
            writer.write(bytes([byte]))
            await asyncio.wait({closed}, timeout=gap)
        if not closed.done():
            stopping = asyncio.create_task(stop.wait())
            await asyncio.wait({closed, stopping}, return_when=asyncio.FIRST_COMPLETED)
            stopping.cancel()
    except (ConnectionError, ssl.SSLError):
        pass
    if closed.done() and not stop.is_set():
        result.closed_by_server += 1
    closed.cancel()
    writer.transport.abort()


async def _until_closed(reader: asyncio.StreamReader) -> None:
    try:
        while await reader.read(65536):
            pass
    except (ConnectionError, ssl.SSLError):
        pass


async def _probe(target: Target) -> bool:
    try:
        reader, writer = await asyncio.wait_for(
            asyncio.open_connection(
                target.host, target.https_port, ssl=target.context, server_hostname="localhost"
            ),
            10,
        )
        writer.write(b"GET /healthz HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
        answer = await asyncio.wait_for(reader.read(12), 10)
        writer.close()
        return answer.startswith(b"HTTP/1.1 200")
    except (OSError, ssl.SSLError, TimeoutError):
        return False


async def slowloris(
    target: Target, attack: Attack, connections: int, seconds: float, gap: float = 1.0
) -> SlowResult:
    """Open `connections` peers doing `attack` (a byte every `gap` seconds, or nothing), in
    waves of 100; `seconds` after the last is open, count those the server closed (a fresh
    client is sent one request half-way)."""
    result = SlowResult(attack, connections)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    peers: list[asyncio.Task[None]] = []
    for first in range(0, connections, 100):
        wave = [loop.create_future() for _ in range(first, min(connections, first + 100))]
        peers += [
            asyncio.create_task(_peer(target, attack, gap, stop, result, dialled))
            for dialled in wave
        ]
        await asyncio.gather(*wave)
    started = time.monotonic()
    await asyncio.sleep(seconds / 2)
    result.probe_ok = await _probe(target)
    await asyncio.sleep(max(0.0, seconds - (time.monotonic() - started)))
    stop.set()
    await asyncio.gather(*peers, return_exceptions=True)
    result.seconds = time.monotonic() - started
    return result
