"""/metrics, /healthz and /readyz on a running devprov, over real HTTPS."""

from __future__ import annotations

import re
import ssl
from pathlib import Path

import aiohttp
import sqlalchemy as sa

from devprov.store.connections import normalize_url
from tests.conftest import Running, Webhook, start_devprov
from tests.helpers import (
    create_group,
    custom_allocation,
    device_request,
    group_device_key,
    register,
)


def sample(exposition: str, name: str, **labels: str) -> float:
    """The value of one sample of the exposition (0 when absent)."""
    for line in exposition.splitlines():
        match = re.fullmatch(r"([a-z_]+)(?:\{(.*)\})? (\S+)", line)
        if not match or match.group(1) != name:
            continue
        found = dict(re.findall(r'(\w+)="([^"]*)"', match.group(2) or ""))
        if all(found.get(key) == value for key, value in labels.items()):
            return float(match.group(3))
    return 0.0


async def scrape(
    running: Running, authorization: str | None = None
) -> tuple[int, str, dict[str, str]]:
    context = ssl.create_default_context(cafile=running.ca)
    request_headers = {"Authorization": authorization} if authorization else {}
    async with (
        aiohttp.ClientSession(connector=aiohttp.TCPConnector(ssl=context)) as http,
        http.get(f"https://localhost:{running.port}/metrics", headers=request_headers) as response,
    ):
        status, text, headers = response.status, await response.text(), dict(response.headers)
    return status, text, headers


async def test_metrics_count_outcomes_stages_and_errors(devprov: Running, webhook: Webhook) -> None:
    await devprov.service().link_hub("hub-1.example")
    group = await create_group(devprov, "fleet")
    assert (await register(devprov, "dev-1", group_device_key(group, "dev-1")))[0] == 200
    wrong = group_device_key(group, "someone-else")
    assert (await register(devprov, "dev-2", wrong))[0] == 401
    fields = await custom_allocation(devprov, webhook, ["hub-1.example"], None)
    hooked = await create_group(devprov, "hooked", **fields)
    webhook.answer({"no": "hub"}, status=500)
    assert (await register(devprov, "dev-3", group_device_key(hooked, "dev-3")))[0] == 200

    status, text, headers = await scrape(devprov)
    assert status == 200 and headers["Content-Type"].startswith("text/plain")
    outcome = {"transport": "https", "attestation": "symmetricKey"}
    assert sample(text, "devprov_registrations_total", outcome="assigned", **outcome) == 1
    assert sample(text, "devprov_registrations_total", outcome="refused", error_code="401000") == 1
    assert (
        sample(
            text, "devprov_registrations_total", outcome="failed", error_code="400207", **outcome
        )
        == 1
    )
    assert sample(text, "devprov_webhook_calls_total", error_code="400207") == 1
    for stage in ("attestation", "allocation", "webhook", "hub_connector", "store"):
        assert sample(text, "devprov_stage_seconds_count", stage=stage) >= 1, stage
    assert sample(text, "devprov_registration_seconds_count", transport="https") == 2
    assert sample(text, "devprov_store_batch_size_count") >= 1
    assert sample(text, "devprov_connections", transport="https") >= 1
    assert "devprov_registrations_in_flight 0.0" in text


async def test_metrics_behind_a_bearer_token(database_url: str, tmp_path: Path) -> None:
    running = await start_devprov(
        tmp_path / "data", database_url, metrics="token", metrics_token="scrape-me"
    )
    try:
        status, text, _ = await scrape(running)
        assert status == 401 and '"errorCode":401000' in text
        assert (await scrape(running, "Bearer wrong"))[0] == 401
        status, text, _ = await scrape(running, "Bearer scrape-me")
        assert status == 200 and "devprov_registrations_in_flight" in text
    finally:
        await running.devprov.close()


async def test_metrics_off_is_not_there(database_url: str, tmp_path: Path) -> None:
    running = await start_devprov(tmp_path / "data", database_url, metrics="off")
    try:
        status, text, _ = await scrape(running)
        assert status == 404 and '"errorCode":404000' in text
    finally:
        await running.devprov.close()


def test_only_loopback_peers_pass_the_default_rule() -> None:
    from devprov.server.metrics import _is_loopback

    assert _is_loopback("127.0.0.1") and _is_loopback("::1") and _is_loopback("127.8.9.1")
    assert not _is_loopback("10.0.0.1") and not _is_loopback(None) and not _is_loopback("x")


async def test_health_and_readiness(devprov: Running, database_url: str) -> None:
    status, body, _ = await device_request(devprov, "GET", "/healthz")
    assert (status, body) == (200, {"status": "alive"})
    status, body, _ = await device_request(devprov, "GET", "/readyz")
    assert status == 200
    assert body == {"status": "ready", "checks": {"store": "reachable", "schema": "current"}}

    engine = sa.create_engine(normalize_url(database_url))  # a newer devprov migrated it
    with engine.begin() as connection:
        connection.execute(sa.text("UPDATE alembic_version SET version_num = 'from_the_future'"))
    engine.dispose()
    status, body, _ = await device_request(devprov, "GET", "/readyz")
    assert status == 503 and body["status"] == "not ready"
    assert body["checks"]["schema"].startswith("at from_the_future")


async def test_readiness_fails_when_the_store_does_not_answer() -> None:
    from aiohttp.test_utils import make_mocked_request

    from devprov.server.health import add_health_routes
    from devprov.server.routing import Router

    async def broken() -> str | None:
        raise ConnectionError("no database")

    router = Router()
    add_health_routes(router, broken, "head")
    handler, params = router.resolve("GET", "/readyz")
    response = await handler(make_mocked_request("GET", "/readyz"), params)
    assert response.status == 503
    assert b"unreachable (ConnectionError)" in response.body  # type: ignore[attr-defined]


def test_the_sample_dashboard_asks_only_for_metrics_devprov_exports() -> None:
    import json

    from devprov.server.metrics import Gauges, Metrics

    metrics = Metrics()
    metrics.watch(Gauges(lambda: {"https": 0}, lambda: 0))
    suffixes = {"counter": ["_total"], "histogram": ["_bucket", "_sum", "_count"], "gauge": [""]}
    exported = {
        family.name + suffix
        for family in metrics.registry.collect()
        for suffix in suffixes[family.type]
    }
    dashboard = json.loads((Path(__file__).parents[2] / "docs/grafana-dashboard.json").read_text())
    asked = {
        name
        for panel in dashboard["panels"]
        for target in panel["targets"]
        for name in re.findall(r"devprov_\w+", target["expr"])
    }
    assert asked and asked <= exported, asked - exported


def test_histogram_buckets_are_cumulative_and_inclusive() -> None:
    from devprov.server.metrics import _Histogram

    histogram = _Histogram((1.0, 2.0))
    for value in (0.5, 1.0, 1.5, 3.0):
        histogram.observe(value)
    assert histogram.buckets() == [("1.0", 2), ("2.0", 3), ("+Inf", 4)]
    assert histogram.total == 6.0
