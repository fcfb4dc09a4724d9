"""The cluster fixture: three devprov nodes in network namespaces of their own, behind HAProxy, on
one fresh PostgreSQL database; and a webhook and device/service clients that reach them."""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import ssl
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import psycopg
import pytest

from devprov.client.service import ServiceClient
from devprov.instance import load_instance
from tests.cluster.topology import BRIDGE_ADDRESS, HTTPS_PORT, Cluster, Node, private_netns_dir
from tests.conftest import IN_NETNS, PG_ADMIN, Webhook, serve_webhook
from tests.helpers import device_token

BALANCER = f"localhost:{HTTPS_PORT}"
# Every node runs with these: a registration answers `assigning` unless it ends at once, and an
# operation a dead node left is failed after OPERATION_DEADLINE seconds (longer than the
# webhook's and the hub's timeouts, as the setting asks).
NODE_SETTINGS = {
    "DEVPROV_FAST_PATH_SECONDS": "0.2",
    "DEVPROV_WEBHOOK_TIMEOUT": "30",
    "DEVPROV_HUB_CONNECTOR_TIMEOUT": "5",
    "DEVPROV_REGISTRATION_DEADLINE": "40",
    "DEVPROV_DRAIN_SECONDS": "60",
    "DEVPROV_LOG_LEVEL": "WARNING",
}


def _need_the_parts() -> None:
    if not IN_NETNS:
        pytest.skip("needs a private network namespace: run through scripts/run-tests")
    if shutil.which("haproxy") is None:
        message = "needs HAProxy (apt-get install haproxy)"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)


def fresh_database() -> tuple[str, Callable[[], None]]:
    name = f"devprov_cluster_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(PG_ADMIN, autocommit=True) as admin:
        admin.execute(f'CREATE DATABASE "{name}"')
    base, _, query = PG_ADMIN.partition("?")
    url = f"{base.rsplit('/', 1)[0]}/{name}" + (f"?{query}" if query else "")

    def drop() -> None:
        with psycopg.connect(PG_ADMIN, autocommit=True) as admin:
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')

    return url, drop


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    _need_the_parts()
    url, drop = fresh_database()
    private_netns_dir()
    made = Cluster(url, tmp_path_factory.mktemp("cluster"), environment=dict(NODE_SETTINGS))
    # The tests read the nodes' data dirs (load_instance) with the deployment's sealing key.
    before = os.environ.get("DEVPROV_SECRET_KEY")
    os.environ["DEVPROV_SECRET_KEY"] = made.sealing_key()
    try:
        made.network(3)
        made.start()
        made.balance()
        yield made
    finally:
        made.down()
        drop()
        if before is None:
            os.environ.pop("DEVPROV_SECRET_KEY", None)
        else:
            os.environ["DEVPROV_SECRET_KEY"] = before


def sql(cluster: Cluster, query: str) -> list[tuple[Any, ...]]:
    """Ask the shared store directly (what every node sees)."""
    with psycopg.connect(cluster.database) as db:
        return list(db.execute(query.encode()).fetchall())


@dataclass
class Deployment:
    """What a device and a service client know of the cluster: its id scope, keys and CA."""

    cluster: Cluster
    id_scope: str = ""
    owner_key: str = ""
    ca: str = ""

    def __post_init__(self) -> None:
        instance = load_instance(self.cluster.nodes[0].data_dir)
        assert instance is not None
        self.id_scope = instance.id_scope
        policy = instance.policy("provisioningserviceowner")
        assert policy is not None
        self.owner_key = policy.primary_key
        self.ca = str(self.cluster.ca)

    def service(self, at: Node | None = None) -> ServiceClient:
        """The service API through the balancer, or of one node."""
        host = at.https if at is not None else BALANCER
        return ServiceClient(
            f"HostName={host};SharedAccessKeyName=provisioningserviceowner;"
            f"SharedAccessKey={self.owner_key}",
            ca_file=self.ca,
        )

    async def device(
        self,
        method: str,
        path: str,
        *,
        at: Node | None = None,
        body: Any = None,
        authorization: str | None = None,
    ) -> tuple[int, Any, dict[str, str]]:
        """One device request through the balancer, or to one node (new connection each)."""
        host = at.https if at is not None else BALANCER
        headers = {"Content-Type": "application/json; charset=utf-8"}
        if authorization:
            headers["Authorization"] = authorization
        context = ssl.create_default_context(cafile=self.ca)
        async with (
            aiohttp.ClientSession(connector=aiohttp.TCPConnector(ssl=context)) as http,
            http.request(
                method, f"https://{host}{path}", data=json.dumps(body or {}), headers=headers
            ) as response,
        ):
            raw = await response.read()
            return response.status, json.loads(raw) if raw else None, dict(response.headers)

    def token(self, registration_id: str, key: str) -> str:
        return device_token(f"{self.id_scope}/registrations/{registration_id}", key)

    async def register(
        self, registration_id: str, key: str, at: Node | None = None
    ) -> tuple[int, Any, dict[str, str]]:
        path = f"/{self.id_scope}/registrations/{registration_id}/register?api-version=2019-03-31"
        return await self.device(
            "PUT",
            path,
            at=at,
            body={"registrationId": registration_id},
            authorization=self.token(registration_id, key),
        )

    async def poll(
        self, registration_id: str, key: str, operation: str, at: Node | None = None
    ) -> tuple[int, Any, dict[str, str]]:
        path = (
            f"/{self.id_scope}/registrations/{registration_id}/operations/{operation}"
            "?api-version=2019-03-31"
        )
        return await self.device("GET", path, at=at, authorization=self.token(registration_id, key))


@pytest.fixture(scope="module")
def deployment(cluster: Cluster) -> Deployment:
    return Deployment(cluster)


BridgeWebhook = Webhook  # a custom allocation webhook every node's namespace reaches


@pytest.fixture
async def webhook() -> AsyncIterator[Webhook]:
    """The webhook on the bridge's address, which every node's namespace reaches."""
    async with serve_webhook(BRIDGE_ADDRESS) as hook:
        yield hook


async def eventually(check: Callable[[], Awaitable[bool]], seconds: float = 120) -> None:
    """Wait until `check` holds (a bound on waiting, never what a test asserts)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + seconds
    while not await check():
        assert loop.time() < deadline, "the cluster did not get there in time"
        await asyncio.sleep(0.2)


def node_log(cluster: Cluster, node: Node) -> str:
    return Path(cluster.log_of(node)).read_text(errors="replace")
