"""Draining: a node told to stop says it is not ready at once, takes no new connections, and
finishes the registrations it holds before it goes."""

from __future__ import annotations

import asyncio
import ssl
from typing import Any

import aiohttp
import pytest
from aiohttp import web

from devprov.registration.service import RegistrationSettings
from tests.conftest import Running, Webhook
from tests.helpers import create_group, group_device_key, register


async def test_a_draining_node_is_unready_refuses_connections_and_finishes_what_it_holds(
    devprov: Running, webhook: Webhook
) -> None:
    devprov.devprov.registrations.settings = RegistrationSettings(
        devprov.id_scope, fast_path_seconds=0
    )
    await devprov.service().link_hub("hub.example")
    group = await create_group(
        devprov,
        "slow",
        allocationPolicy="custom",
        customAllocationDefinition={"webhookUrl": webhook.url, "apiVersion": "2021-10-01"},
    )
    called, release = asyncio.Event(), asyncio.Event()

    async def held(_: dict[str, Any]) -> web.StreamResponse:
        called.set()
        await release.wait()
        return web.json_response({"iotHubHostName": "hub.example"})

    webhook.behaviour = held
    status, body, _ = await register(devprov, "held-1", group_device_key(group, "held-1"))
    assert (status, body["status"]) == (202, "assigning")
    await called.wait()

    context = ssl.create_default_context(cafile=devprov.ca)
    url = f"https://localhost:{devprov.port}/readyz"
    connector = aiohttp.TCPConnector(ssl=context, limit=1)  # one kept-alive connection
    async with aiohttp.ClientSession(connector=connector) as http:
        async with http.get(url) as response:
            assert response.status == 200
        draining = asyncio.create_task(devprov.devprov.drain(60))
        await devprov.devprov.draining.wait()
        await asyncio.sleep(0)  # and the listeners it closes next are closed
        async with http.get(url) as response:  # the open connection is still served
            assert response.status == 503
            assert (await response.json())["status"] == "draining"
        with pytest.raises(aiohttp.ClientConnectionError):  # a new one is not
            async with aiohttp.ClientSession(
                connector=aiohttp.TCPConnector(ssl=context, force_close=True)
            ) as fresh:
                await fresh.get(url)
        assert not draining.done()  # it waits for the registration it holds
        release.set()
        assert await draining is True
    record = await devprov.devprov.registrations.records.read("held-1")
    assert record is not None and record["status"] == "assigned"
    operation = await devprov.devprov.registrations.operations.read(body["operationId"])
    assert operation is not None and operation["status"] == "assigned"
