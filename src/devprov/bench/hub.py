"""A fleet's first minute against the built-in hub: provision then connect, telemetry, memory.

Each device registers over HTTPS with a TLS connection of its own (as a first boot does), then
opens an MQTT connection to its assigned hub with the key provisioning gave it, reads its twin,
and stays connected; then every device sends telemetry at QoS 1, each message waiting for its
PUBACK before the next.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import json
import ssl
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from urllib.parse import quote

from devprov.bench.fleet import Fleet
from devprov.bench.load import DEVICE_TIMEOUT_SECONDS, Target, https_register_alone
from devprov.bench.wire import MqttClient, WireError
from devprov.protocol import mqtt


@dataclass
class HubResult:
    devices: int
    connected: int
    connect_seconds: float
    messages: int
    message_seconds: float
    rss_before_mb: float
    rss_connected_mb: float
    errors: Counter[str] = field(default_factory=Counter)

    @property
    def provisioned_and_connected_per_second(self) -> float:
        return self.connected / self.connect_seconds if self.connect_seconds else 0.0

    @property
    def messages_per_second(self) -> float:
        return self.messages / self.message_seconds if self.message_seconds else 0.0

    @property
    def kb_per_connected_device(self) -> float:
        delta = self.rss_connected_mb - self.rss_before_mb
        return delta * 1024 / max(1, self.connected)


def hub_token(fleet: Fleet, hub: str, device_id: str) -> str:
    """The hub SAS token a group device signs with its derived key (as the Python SDK does)."""
    device_key = hmac.new(base64.b64decode(fleet.group_key), device_id.encode(), hashlib.sha256)
    resource = quote(f"{hub}/devices/{device_id}", safe="")
    expiry = int(time.time()) + 3600
    signature = hmac.new(device_key.digest(), f"{resource}\n{expiry}".encode(), hashlib.sha256)
    sig = quote(base64.b64encode(signature.digest()).decode(), safe="")
    return f"SharedAccessSignature sr={resource}&sig={sig}&se={expiry}"


async def connect_to_hub(fleet: Fleet, number: int, target: Target) -> MqttClient:
    hub = await https_register_alone(fleet, number, target)
    device_id = fleet.registration_id(number)
    reader, writer = await asyncio.open_connection(
        target.host, target.mqtt_port, ssl=target.context
    )
    client = MqttClient(reader, writer)
    try:
        username = f"{hub}/{device_id}/?api-version=2021-04-12"
        token = hub_token(fleet, hub, device_id).encode()
        client.send(mqtt.Connect(device_id, username, token, keep_alive=600))
        connack = await client.packet()
        if not isinstance(connack, mqtt.ConnAck) or connack.return_code:
            raise WireError("hub connack refused")
        client.send(mqtt.Subscribe(1, (("$iothub/twin/res/#", 0),)))
        await client.packet()
        client.send(mqtt.Publish("$iothub/twin/GET/?$rid=1", b" "))
        answer = await client.packet()
        if not isinstance(answer, mqtt.Publish) or "/res/200/" not in answer.topic:
            raise WireError("twin get failed")
    except BaseException:
        writer.close()
        raise
    return client


async def send_telemetry(client: MqttClient, device_id: str, count: int) -> int:
    topic = f"devices/{device_id}/messages/events/%24.ct=application%2Fjson&%24.ce=utf-8"
    for number in range(count):
        client.publish(topic, json.dumps({"n": number, "temperature": 21.5}).encode())
        while not isinstance(await client.packet(), mqtt.PubAck):
            pass
    return count


async def run_hub_fleet(
    target: Target,
    fleet: Fleet,
    devices: int,
    messages: int,
    *,
    concurrency: int,
    rss: Callable[[], float],
) -> HubResult:
    """Provision and connect `devices` (`concurrency` at a time), then `messages` each."""
    errors: Counter[str] = Counter()
    clients: dict[str, MqttClient] = {}
    numbers = iter(range(devices))
    before = rss()

    async def connect_slot() -> None:
        for number in numbers:
            try:
                async with asyncio.timeout(DEVICE_TIMEOUT_SECONDS):
                    clients[fleet.registration_id(number)] = await connect_to_hub(
                        fleet, number, target
                    )
            except (WireError, OSError, TimeoutError, ssl.SSLError, mqtt.ProtocolError) as error:
                errors[str(error) if isinstance(error, WireError) else type(error).__name__] += 1

    started = time.perf_counter()
    await asyncio.gather(*(connect_slot() for _ in range(concurrency)))
    connect_seconds = time.perf_counter() - started
    await asyncio.sleep(2)
    connected_rss = rss()

    async def chatter(device_id: str, client: MqttClient) -> int:
        try:
            return await send_telemetry(client, device_id, messages)
        except (WireError, OSError, ssl.SSLError, mqtt.ProtocolError) as error:
            errors[type(error).__name__] += 1
            return 0

    started = time.perf_counter()
    sent = await asyncio.gather(*(chatter(d, c) for d, c in clients.items()))
    message_seconds = time.perf_counter() - started
    for client in clients.values():
        client.writer.close()
    return HubResult(
        devices, len(clients), connect_seconds, sum(sent), message_seconds, before,
        connected_rss, errors,
    )  # fmt: skip
