"""Overload as DPS sheds it: past the admission caps a register is answered 429 (429001) with
Retry-After, over HTTPS and MQTT, and is admitted again as soon as room is made."""

from __future__ import annotations

import asyncio
import json
import ssl
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web

from devprov.protocol import mqtt
from tests.conftest import Running, Webhook, start_devprov
from tests.helpers import (
    create_enrollment,
    custom_allocation,
    device_token,
    primary_key,
    register,
)
from tests.protocol.framing import read_packets
from tests.server.test_slow_peers import connect_packet

WAIT_SECONDS = 20.0


class Held:
    """A webhook that holds every call until released (registrations stay in flight)."""

    def __init__(self, webhook: Webhook) -> None:
        self.release = asyncio.Event()
        self.calls = 0

        async def hold(body: dict[str, Any]) -> web.StreamResponse:
            self.calls += 1
            await self.release.wait()
            return web.json_response({"iotHubHostName": body["linkedHubs"][0]})

        webhook.behaviour = hold


async def start(tmp_path: Path, **caps: Any) -> Running:
    return await start_devprov(
        tmp_path / "data",
        f"sqlite:///{tmp_path / 'devprov.db'}",
        fast_path_seconds=0.0,
        throttle_retry_after=3,
        **caps,
    )


@pytest.fixture
async def per_device(tmp_path: Path) -> AsyncIterator[Running]:
    running = await start(tmp_path, max_registrations_in_flight_per_device=1)
    yield running
    await running.devprov.close()


@pytest.fixture
async def global_cap(tmp_path: Path) -> AsyncIterator[Running]:
    running = await start(tmp_path, max_registrations_in_flight=1)
    yield running
    await running.devprov.close()


async def enroll(running: Running, webhook: Webhook, *ids: str) -> dict[str, str]:
    fields = await custom_allocation(running, webhook, ["hub.example"], None)
    return {rid: primary_key(await create_enrollment(running, rid, **fields)) for rid in ids}


async def until_idle(running: Running) -> None:
    async with asyncio.timeout(WAIT_SECONDS):
        while running.devprov.registrations.in_flight:  # noqa: ASYNC110
            await asyncio.sleep(0.01)


def assert_throttled(status: int, body: Any, headers: dict[str, str]) -> None:
    assert status == 429, body
    assert body["errorCode"] == 429001
    assert body["trackingId"]
    assert "Too many requests" in body["message"]
    assert headers["Retry-After"] == "3"


async def test_a_second_registration_of_one_device_in_flight_is_429(
    per_device: Running, webhook: Webhook
) -> None:
    keys = await enroll(per_device, webhook, "dev-1", "dev-2")
    held = Held(webhook)
    status, first, _ = await register(per_device, "dev-1", keys["dev-1"])
    assert (status, first["status"]) == (202, "assigning")

    assert_throttled(*await register(per_device, "dev-1", keys["dev-1"]))
    status, other, _ = await register(per_device, "dev-2", keys["dev-2"])  # another device
    assert status == 202, other

    held.release.set()
    await until_idle(per_device)
    status, again, _ = await register(per_device, "dev-1", keys["dev-1"])  # room again
    assert status == 202, again
    assert per_device.devprov.registrations.throttled == 1


async def test_past_the_global_cap_every_device_gets_429_until_room_is_made(
    global_cap: Running, webhook: Webhook
) -> None:
    keys = await enroll(global_cap, webhook, "dev-1", "dev-2")
    held = Held(webhook)
    status, _, _ = await register(global_cap, "dev-1", keys["dev-1"])
    assert status == 202

    assert_throttled(*await register(global_cap, "dev-2", keys["dev-2"]))

    held.release.set()
    await until_idle(global_cap)
    status, body, _ = await register(global_cap, "dev-2", keys["dev-2"])
    assert status == 202, body


async def test_over_mqtt_a_throttled_register_is_answered_429_with_retry_after(
    per_device: Running, webhook: Webhook
) -> None:
    keys = await enroll(per_device, webhook, "dev-1")
    held = Held(webhook)
    token = device_token(f"{per_device.id_scope}/registrations/dev-1", keys["dev-1"])
    context = ssl.create_default_context(cafile=per_device.ca)
    reader, writer = await asyncio.open_connection(
        "localhost", per_device.devprov.instance.mqtt_port, ssl=context
    )
    writer.write(connect_packet("dev-1", token.encode(), per_device.id_scope))
    writer.write(mqtt.encode(mqtt.Subscribe(1, (("$dps/registrations/res/#", 1),))))
    body = json.dumps({"registrationId": "dev-1"}).encode()
    for rid in ("1", "2"):
        topic = f"$dps/registrations/PUT/iotdps-register/?$rid={rid}"
        writer.write(mqtt.encode(mqtt.Publish(topic, body, 1, int(rid) + 10)))
    answers: dict[str, tuple[str, Any]] = {}
    buffer = b""
    async with asyncio.timeout(WAIT_SECONDS):
        while len(answers) < 2:
            buffer += await reader.read(65536)
            packets, buffer = read_packets(buffer)
            for packet in packets:
                if isinstance(packet, mqtt.Publish):
                    rid = packet.topic.split("$rid=")[1].split("&")[0]
                    answers[rid] = (packet.topic, json.loads(packet.payload))
    topic, _ = answers["1"]
    assert topic.startswith("$dps/registrations/res/202/")
    topic, refused = answers["2"]
    assert topic == "$dps/registrations/res/429/?$rid=2&retry-after=3"
    assert refused["errorCode"] == 429001
    held.release.set()
    await until_idle(per_device)
    writer.close()
