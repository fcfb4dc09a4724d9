"""Reading a body from an aiohttp stream without ever holding more than a set number of bytes."""

from __future__ import annotations

from aiohttp import StreamReader


async def read_limited(stream: StreamReader, max_bytes: int) -> bytes:
    """Read to the end, or one byte past `max_bytes` (so the caller can tell it is too big).

    A single `read(n)` returns what has arrived so far, not n bytes, hence the loop."""
    buffer = bytearray()
    while len(buffer) <= max_bytes:
        chunk = await stream.read(max_bytes + 1 - len(buffer))
        if not chunk:
            break
        buffer += chunk
    return bytes(buffer)
