"""Client-side MQTT framing for tests: split a byte stream into packets by the 2.2.3 rules.

Written independently of `ServerConnection`, so the server's own buffering is not used to check
what the server writes.
"""

from __future__ import annotations

from devprov.protocol import mqtt


def split_frame(data: bytes) -> tuple[int, int, bytes, int] | None:
    """The first complete frame of `data` as (type, flags, body, frame length), or None."""
    if len(data) < 2:
        return None
    length, shift, position = 0, 0, 1
    while True:
        if position >= len(data):
            return None
        digit = data[position]
        length |= (digit & 0x7F) << shift
        position += 1
        if not digit & 0x80:
            break
        shift += 7
        assert position <= 4, "remaining length longer than four bytes"
    end = position + length
    if len(data) < end:
        return None
    return data[0] >> 4, data[0] & 0x0F, bytes(data[position:end]), end


def read_packets(data: bytes) -> tuple[list[mqtt.Packet], bytes]:
    """Every complete packet in `data`, decoded with `mqtt.decode`, and the bytes left over."""
    packets: list[mqtt.Packet] = []
    while (frame := split_frame(data)) is not None:
        packet_type, flags, body, end = frame
        packets.append(mqtt.decode(packet_type, flags, body))
        data = data[end:]
    return packets, data
