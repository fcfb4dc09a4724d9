"""Shared fixtures: a database per backend, a running devprov, a real webhook server."""

from __future__ import annotations

import contextlib
import json
import os
import socket
import threading
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psycopg
import pytest
from aiohttp import web

from devprov.client.service import ServiceClient
from devprov.domain.records import Kind
from devprov.settings import Settings
from devprov.wiring import Devprov, start

pytest_plugins = ["tests.tpm_support", "tests.log_secrets"]

IN_NETNS = os.environ.get("DEVPROV_NETNS") == "1"
PG_ADMIN = os.environ.get("DEVPROV_TEST_PG", "postgresql://root@/postgres?host=/var/run/postgresql")
fixed_ports = pytest.mark.skipif(
    not IN_NETNS, reason="needs ports 443/8883: run through scripts/run-tests (a private netns)"
)


@pytest.fixture(params=["sqlite", "postgresql"])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """A fresh, empty database of each kind; PostgreSQL gets a database of its own per test."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'devprov.db'}"
        return
    name = f"devprov_test_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(PG_ADMIN, autocommit=True) as admin:
        admin.execute(f'CREATE DATABASE "{name}"')
    base, _, query = PG_ADMIN.partition("?")
    yield f"{base.rsplit('/', 1)[0]}/{name}" + (f"?{query}" if query else "")
    with psycopg.connect(PG_ADMIN, autocommit=True) as admin:
        admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@dataclass
class Running:
    """A devprov running in the test's event loop, and what a client needs to reach it."""

    devprov: Devprov
    port: int
    data_dir: Path

    @property
    def id_scope(self) -> str:
        return self.devprov.instance.id_scope

    @property
    def ca(self) -> str:
        return str(self.devprov.tls.ca_cert)

    @property
    def connection_string(self) -> str:
        return self.devprov.instance.connection_string()

    def service(self) -> ServiceClient:
        return ServiceClient(self.connection_string, ca_file=self.ca)

    async def hub_connection_string(self, hub: str) -> str:
        """A built-in hub's iothubowner connection string (never shown by the API)."""
        stored = await self.devprov.store.get(Kind.LINKED_HUB, hub.lower())
        assert stored is not None, f"{hub} is not linked"
        text: str = stored.document["connectionString"]
        return text


async def start_devprov(
    data_dir: Path, database_url: str, port: int | None = None, **options: Any
) -> Running:
    port = port or (443 if IN_NETNS else free_port())
    options.setdefault("mqtt_port", 8883 if IN_NETNS else free_port())
    options.setdefault("amqp_port", 5671 if IN_NETNS else free_port())
    devprov = await start(
        Settings(data_dir=data_dir, host="localhost", https_port=port, db=database_url, **options)
    )
    running = Running(devprov, port, data_dir)
    from tests import log_secrets  # the plugin (imported here: pytest registers it first)

    log_secrets.started()
    for policy in devprov.instance.policies:
        log_secrets.remember(policy.primary_key, policy.secondary_key)
    log_secrets.remember(running.connection_string, options.get("metrics_token"))
    # Runs before the store closes (the stack closes newest first): its keys are known then.
    devprov.stack.push_async_callback(log_secrets.remember_store, devprov.store)
    return running


@pytest.fixture
async def devprov(database_url: str, tmp_path: Path) -> AsyncIterator[Running]:
    running = await start_devprov(tmp_path / "data", database_url)
    yield running
    await running.devprov.close()


Behaviour = Callable[[dict[str, Any]], Awaitable[web.StreamResponse]]


@dataclass
class Webhook:
    """A real custom allocation webhook on loopback; tests set `behaviour` and read `requests`."""

    url: str = ""
    requests: list[dict[str, Any]] = field(default_factory=list)
    behaviour: Behaviour | None = None

    def answer(self, body: Any, status: int = 200) -> None:
        async def respond(_: dict[str, Any]) -> web.StreamResponse:
            return web.json_response(body, status=status)

        self.behaviour = respond


@contextlib.asynccontextmanager
async def serve_webhook(host: str = "127.0.0.1", query: str = "") -> AsyncIterator[Webhook]:
    """A real webhook on `host`: it records each request and answers with `behaviour` (by
    default the first linked hub)."""
    hook = Webhook()

    async def handle(request: web.Request) -> web.StreamResponse:
        body = json.loads(await request.read())
        hook.requests.append(body)
        if hook.behaviour is not None:
            return await hook.behaviour(body)
        return web.json_response({"iotHubHostName": body["linkedHubs"][0]})

    app = web.Application()
    app.router.add_post("/allocate", handle)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, host, 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    hook.url = f"http://{host}:{port}/allocate{query}"
    try:
        yield hook
    finally:
        await runner.cleanup()


@pytest.fixture
async def webhook() -> AsyncIterator[Webhook]:
    async with serve_webhook(query="?code=secret") as hook:
        yield hook


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    """The Python device SDK leaves timer threads behind (threading.Timer and its own Alarm);
    cancel them, or they fire at interpreter exit into its shut-down executors and print
    tracebacks after the test summary."""
    for thread in threading.enumerate():
        cancel = getattr(thread, "cancel", None)
        if thread is not threading.main_thread() and callable(cancel):
            cancel()
