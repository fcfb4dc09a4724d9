"""The official Python device SDK under devprov's admission caps: answered 429 with
`retry-after`, it waits and registers again, and every device ends up assigned."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web

from tests.conftest import Running, Webhook, fixed_ports, start_devprov
from tests.helpers import create_enrollment, custom_allocation, primary_key
from tests.interop.test_python_device import py_register

pytestmark = fixed_ports
DEVICES = 4


@pytest.fixture
async def capped(tmp_path: Path) -> AsyncIterator[Running]:
    running = await start_devprov(
        tmp_path / "data",
        f"sqlite:///{tmp_path / 'devprov.db'}",
        max_registrations_in_flight=1,
        throttle_retry_after=1,
    )
    yield running
    await running.devprov.close()


@pytest.mark.parametrize("websockets", [False, True], ids=["mqtt", "websocket"])
async def test_devices_throttled_with_429_back_off_and_all_register(
    capped: Running, webhook: Webhook, websockets: bool
) -> None:
    fields = await custom_allocation(capped, webhook, ["hub.example"], None)
    keys = {
        f"busy-{n}": primary_key(await create_enrollment(capped, f"busy-{n}", **fields))
        for n in range(DEVICES)
    }

    async def slowly(body: dict[str, Any]) -> web.StreamResponse:
        await asyncio.sleep(0.5)  # each registration holds the one place for a while
        return web.json_response({"iotHubHostName": body["linkedHubs"][0]})

    webhook.behaviour = slowly

    results = await asyncio.gather(
        *(py_register(capped, rid, key, websockets=websockets) for rid, key in keys.items())
    )

    assert [r.status for r in results] == ["assigned"] * DEVICES
    assert capped.devprov.registrations.throttled >= 1  # some were told to come back
