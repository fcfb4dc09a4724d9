"""`devprov serve --workers 2`: processes on the same ports and store answer each other's polls."""

from __future__ import annotations

import asyncio
import json
import socket
import ssl
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web

from devprov.attestation.sas import build_sas
from devprov.client.service import ServiceClient
from devprov.domain.keys import derive_device_key
from tests.conftest import free_port


@pytest.fixture
def two_workers(tmp_path: Path, database_url: str) -> Iterator[dict[str, Any]]:
    data_dir = tmp_path / "data"
    port = free_port()
    server = subprocess.Popen(
        [
            sys.executable, "-m", "devprov.cli", "serve", "--data-dir", str(data_dir),
            "--host", "127.0.0.1", "--https-port", str(port), "--mqtt-port", str(free_port()),
            "--db", database_url, "--workers", "2", "--log-level", "WARNING",
        ],
        stdout=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            try:
                with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                    break
            except OSError:
                time.sleep(0.2)
        info = subprocess.run(
            [sys.executable, "-m", "devprov.cli", "info", "--data-dir", str(data_dir), "--json"],
            capture_output=True, text=True, check=True,
        )  # fmt: skip
        yield json.loads(info.stdout)
    finally:
        server.terminate()
        server.wait(timeout=20)


async def test_polls_are_answered_by_whichever_worker_gets_them(
    two_workers: dict[str, Any],
) -> None:
    release = asyncio.Event()

    async def slow(request: web.Request) -> web.Response:
        await asyncio.wait_for(release.wait(), 10)
        return web.json_response({"iotHubHostName": "hub.example", "payload": {"late": 1}})

    app = web.Application()
    app.router.add_post("/", slow)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    hook = f"http://127.0.0.1:{site._server.sockets[0].getsockname()[1]}/"  # type: ignore[union-attr]
    try:
        ca = two_workers["caCertificatePath"]
        service = ServiceClient(two_workers["serviceConnectionString"], ca_file=ca)
        await service.link_hub("hub.example")
        group = await service.put_group(
            {
                "enrollmentGroupId": "slow",
                "attestation": {"type": "symmetricKey"},
                "allocationPolicy": "custom",
                "customAllocationDefinition": {"webhookUrl": hook, "apiVersion": "2021-10-01"},
            }
        )
        key = group["attestation"]["symmetricKey"]["primaryKey"]
        scope, port = two_workers["idScope"], two_workers["httpsPort"]
        context = ssl.create_default_context(cafile=ca)

        async def call(method: str, path: str, registration_id: str) -> tuple[int, Any]:
            """One request on a connection of its own: the kernel picks the worker."""
            token = build_sas(
                f"{scope}/registrations/{registration_id}",
                derive_device_key(key, registration_id),
                key_name="registration",
            )
            async with (
                aiohttp.ClientSession(connector=aiohttp.TCPConnector(ssl=context)) as http,
                http.request(
                    method,
                    f"https://127.0.0.1:{port}/{scope}/registrations/{registration_id}{path}"
                    "?api-version=2021-06-01",
                    json={"registrationId": registration_id},
                    headers={"Authorization": token},
                ) as response,
            ):
                return response.status, await response.json()

        async def register(registration_id: str) -> dict[str, Any]:
            status, body = await call("PUT", "/register", registration_id)
            while status == 202:
                await asyncio.sleep(0.2)
                status, body = await call(
                    "GET", f"/operations/{body['operationId']}", registration_id
                )
            assert status == 200, body
            state: dict[str, Any] = body["registrationState"]
            return state

        registering = asyncio.gather(*(register(f"dev-{n}") for n in range(12)))
        await asyncio.sleep(2.5)  # past the fast path: every device is polling by now
        release.set()
        states = await registering
    finally:
        await runner.cleanup()
    assert [state["status"] for state in states] == ["assigned"] * 12
    assert all(state["payload"] == {"late": 1} for state in states)
