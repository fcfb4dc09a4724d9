"""Test-side AMQP framing: cut what the server wrote into frames, and write client frames.

The frame header is read here independently of `ServerConnection` (size, data offset, type,
channel), so the server's own buffering is not used to check what the server writes.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

from devprov.protocol.amqp_frames import (
    AMQP_HEADER,
    FRAME_AMQP,
    FRAME_SASL,
    SASL_HEADER,
    Performative,
    decode_body,
)


@dataclass(frozen=True)
class Frame:
    kind: int
    channel: int
    performative: Performative | None  # None: an empty frame (a heartbeat)
    payload: bytes = b""


def split(data: bytes) -> list[bytes | Frame]:
    """Protocol headers (as bytes) and frames, in the order the server wrote them."""
    items: list[bytes | Frame] = []
    while data:
        if data[:4] == b"AMQP":
            items.append(data[:8])
            data = data[8:]
            continue
        size, offset, kind, channel = struct.unpack_from(">IBBH", data)
        assert size >= 8 and offset >= 2 and len(data) >= size, "a cut or malformed frame"
        body = data[offset * 4 : size]
        if body:
            performative, payload = decode_body(kind, body)
            items.append(Frame(kind, channel, performative, payload))
        else:
            items.append(Frame(kind, channel, None))
        data = data[size:]
    return items


def performatives(data: bytes) -> list[Performative]:
    """Only the performatives the server wrote (headers and heartbeats left out)."""
    return [
        item.performative
        for item in split(data)
        if isinstance(item, Frame) and item.performative is not None
    ]


def client_frame(
    performative: Performative, payload: bytes = b"", *, channel: int = 0, sasl: bool = False
) -> bytes:
    body = performative.encode() + payload
    kind = FRAME_SASL if sasl else FRAME_AMQP
    return struct.pack(">IBBH", 8 + len(body), 2, kind, channel) + body


__all__ = ["AMQP_HEADER", "SASL_HEADER", "Frame", "client_frame", "performatives", "split"]
