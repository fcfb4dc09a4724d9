"""`devprov serve --workers 2`: processes on the same ports and store answer each other's polls."""

from __future__ import annotations

import asyncio
import contextlib
import json
import random
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
from cryptography import x509

from devprov.attestation.sas import build_sas
from devprov.client.service import ServiceClient
from devprov.domain.keys import derive_device_key
from devprov.keyring import load_sealer
from devprov.server.tls import read_key
from tests.conftest import Webhook, free_port


@pytest.fixture
def two_workers(tmp_path: Path, database_url: str) -> Iterator[dict[str, Any]]:
    with workers(tmp_path / "data", database_url) as info:
        yield info


@contextlib.contextmanager
def workers(data_dir: Path, database_url: str, *extra: str) -> Iterator[dict[str, Any]]:
    """`devprov serve --workers 2` until the block ends; answers `devprov info`."""
    port = free_port()
    server = subprocess.Popen(
        [
            sys.executable, "-m", "devprov.cli", "serve", "--data-dir", str(data_dir),
            "--host", "127.0.0.1", "--https-port", str(port), "--mqtt-port", str(free_port()),
            "--amqp-port", str(free_port()), "--db", database_url, "--workers", "2",
            "--log-level", "WARNING", *extra,
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


@pytest.fixture
def uncapped_workers(tmp_path: Path, database_url: str) -> Iterator[dict[str, Any]]:
    """Two workers that admit every registration of one id (no 429 past 4 at once)."""
    uncapped = ("--max-registrations-in-flight-per-device", "0")
    with workers(tmp_path / "data", database_url, *uncapped) as info:
        yield info


async def test_one_id_registering_on_both_workers_lands_on_one_hub(
    uncapped_workers: dict[str, Any], webhook: Webhook
) -> None:
    """50 registrations of one id at once, spread over two processes by the kernel, a webhook
    picking hubs at random: the identity ends up on one hub, the one its record names."""
    two_workers = uncapped_workers
    hubs = ["hub-a.example", "hub-b.example", "hub-c.example"]

    async def pick(body: dict[str, Any]) -> web.StreamResponse:
        await asyncio.sleep(random.random() / 100)
        return web.json_response({"iotHubHostName": random.choice(body["linkedHubs"])})

    webhook.behaviour = pick
    ca = two_workers["caCertificatePath"]
    service = ServiceClient(two_workers["serviceConnectionString"], ca_file=ca)
    for hub in hubs:
        await service.link_hub(hub)
    group = await service.put_group(
        {
            "enrollmentGroupId": "racers",
            "attestation": {"type": "symmetricKey"},
            "allocationPolicy": "custom",
            "customAllocationDefinition": {"webhookUrl": webhook.url, "apiVersion": "2021-10-01"},
        }
    )
    key = derive_device_key(group["attestation"]["symmetricKey"]["primaryKey"], "racer")
    scope, port = two_workers["idScope"], two_workers["httpsPort"]
    context = ssl.create_default_context(cafile=ca)
    token = build_sas(f"{scope}/registrations/racer", key, key_name="registration")

    async def register() -> str:
        url = f"https://127.0.0.1:{port}/{scope}/registrations/racer"
        async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(ssl=context)) as http:
            async with http.put(
                f"{url}/register?api-version=2021-06-01",
                json={"registrationId": "racer"},
                headers={"Authorization": token},
            ) as response:
                status, body = response.status, await response.json()
            while status == 202:
                await asyncio.sleep(0.2)
                async with http.get(
                    f"{url}/operations/{body['operationId']}?api-version=2021-06-01",
                    headers={"Authorization": token},
                ) as response:
                    status, body = response.status, await response.json()
        assert status == 200, body
        return str(body["status"])

    for _ in range(2):
        assert set(await asyncio.gather(*(register() for _ in range(50)))) == {"assigned"}
        record = await service.call("GET", "/registrations/racer")
        found = []
        for hub in hubs:
            status, _, _ = await service.request("GET", f"/linkedHubs/{hub}/devices/racer")
            if status == 200:
                found.append(hub)
        assert found == [record["assignedHub"]]


def test_workers_starting_together_make_one_certificate_pair(tmp_path: Path) -> None:
    """Each worker makes the certificate its built-in hub's name needs; under the TLS
    directory's lock one makes it, the other finds it made: the pair always matches."""
    for attempt in range(3):
        data_dir = tmp_path / f"data-{attempt}"
        with workers(data_dir, f"sqlite:///{tmp_path / f'{attempt}.db'}", "--default-hub",
                     "hub.test") as info:  # fmt: skip
            port = info["httpsPort"]
            context = ssl.create_default_context(cafile=info["caCertificatePath"])
            for _ in range(6):  # connections land on either worker
                with (
                    socket.create_connection(("127.0.0.1", port), timeout=10) as raw,
                    context.wrap_socket(raw, server_hostname="127.0.0.1") as tls,
                ):
                    assert tls.version() is not None
        tls_dir = data_dir / "tls"
        cert = x509.load_pem_x509_certificates((tls_dir / "server.pem").read_bytes())[0]
        key = read_key(tls_dir / "server-key.pem", load_sealer(data_dir, create=False))
        assert cert.public_key() == key.public_key()
        names = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
        assert "hub.test" in names.get_values_for_type(x509.DNSName)
        assert not list(tls_dir.glob("*.tmp"))
