"""What idle MQTT devices cost: many connections held, server memory before and after."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

from devprov.bench.fleet import Fleet
from devprov.bench.load import Target, connect_mqtt_device
from devprov.bench.wire import MqttClient, WireError
from devprov.protocol import mqtt


@dataclass
class IdleResult:
    connections: int
    failed: int
    rss_before_mb: float
    rss_after_mb: float

    @property
    def kb_per_connection(self) -> float:
        return (self.rss_after_mb - self.rss_before_mb) * 1024 / max(1, self.connections)


async def hold_idle(
    target: Target, fleet: Fleet, count: int, settle: float = 2.0
) -> list[MqttClient]:
    """Connect `count` devices (in waves of 100) and leave them connected."""
    clients: list[MqttClient] = []

    async def connect(number: int) -> MqttClient | None:
        try:
            return await connect_mqtt_device(
                fleet, fleet.registration_id(number), target, keep_alive=600
            )
        except (OSError, WireError, mqtt.ProtocolError):
            return None

    for start in range(0, count, 100):
        wave = await asyncio.gather(*(connect(n) for n in range(start, min(count, start + 100))))
        clients += [client for client in wave if client is not None]
    await asyncio.sleep(settle)
    return clients
