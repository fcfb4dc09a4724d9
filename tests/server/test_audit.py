"""The audit trail: every write through the service API (refused ones too) and the CLI is kept,
with who, what, when and from where and never a key; listed by `GET /audit` and `devprov audit
list`, filtered by time and count, and pruned by age (SQLite and PostgreSQL)."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from devprov.domain.audit import AuditEntry
from devprov.domain.policies import OWNER_POLICY
from devprov.store.audit import StoredAudit
from tests.cli.test_commands import devprov as cli
from tests.conftest import Running, start_devprov
from tests.server.test_service_api import Api, session_for


@pytest.fixture
async def api(devprov: Running) -> AsyncIterator[Api]:
    async with session_for(devprov) as session:
        yield Api(devprov, session)


async def _audit(api: Api, query: str = "") -> list[dict[str, object]]:
    trail = await api.ok("GET", "/audit" + query)
    assert isinstance(trail, list)
    return trail


async def test_service_api_writes_are_recorded_and_reads_are_not(api: Api) -> None:
    enrollment = await api.ok(
        "PUT",
        "/enrollments/dev-1",
        {"registrationId": "dev-1", "attestation": {"type": "symmetricKey"}},
    )
    group = {"enrollmentGroupId": "grp-1", "attestation": {"type": "symmetricKey"}}
    await api.ok("PUT", "/enrollmentGroups/grp-1", group)
    bulk = {
        "mode": "create",
        "enrollments": [{"registrationId": "dev-2", "attestation": {"type": "symmetricKey"}}],
    }
    await api.ok("POST", "/enrollments", bulk)
    await api.ok("PUT", "/linkedHubs/hub.example", {})
    await api.ok("GET", "/enrollments/dev-1")
    await api.ok("POST", "/enrollments/query", {})
    assert (await api.call("DELETE", "/registrations/ghost")).status == 404
    assert (await api.call("DELETE", "/enrollments/dev-2")).status == 204
    refused = await api.call(
        "DELETE",
        "/enrollments/dev-1",
        authorization="SharedAccessSignature sr=x&sig=y&se=1&skn=nobody",
    )
    assert refused.status == 401

    trail = await _audit(api)

    seen = [(e["method"], e["path"], e["resource"], e["status"], e["who"]) for e in trail]
    assert seen == [
        ("DELETE", "/enrollments/dev-1", "dev-1", 401, "-"),
        ("DELETE", "/enrollments/dev-2", "dev-2", 204, OWNER_POLICY),
        ("DELETE", "/registrations/ghost", "ghost", 404, OWNER_POLICY),
        ("PUT", "/linkedHubs/hub.example", "hub.example", 200, OWNER_POLICY),
        ("POST", "/enrollments", None, 200, OWNER_POLICY),
        ("PUT", "/enrollmentGroups/grp-1", "grp-1", 200, OWNER_POLICY),
        ("PUT", "/enrollments/dev-1", "dev-1", 200, OWNER_POLICY),
    ]
    assert {e["peer"] for e in trail} == {"127.0.0.1"}
    assert all(str(e["at"]).endswith("Z") for e in trail)
    text = json.dumps(trail)
    for key in enrollment["attestation"]["symmetricKey"].values():
        assert key not in text
    assert api.policy_key() not in text


async def test_the_trail_is_filtered_by_time_and_count(api: Api) -> None:
    for number in range(3):
        await api.ok("PUT", f"/certificates/ca-{number}", {"certificate": _ca_pem()})
    trail = await _audit(api, "?limit=2")
    assert [e["resource"] for e in trail] == ["ca-2", "ca-1"]
    newest = trail[0]["at"]
    assert [e["resource"] for e in await _audit(api, f"?since={newest}")] == ["ca-2"]
    assert await _audit(api, f"?since={time.time() + 60:.0f}") == []
    for query in ("?limit=0", "?limit=x", "?limit=1001", "?since=yesterday"):
        reply = await api.call("GET", "/audit" + query)
        assert reply.status == 400, query
        assert reply.json["errorCode"] == 400004


async def test_reading_the_trail_needs_service_config(api: Api) -> None:
    reply = await api.call("GET", "/audit", authorization=None)
    assert reply.status == 401


async def test_old_entries_are_pruned(devprov: Running) -> None:
    trail = StoredAudit(devprov.devprov.store, retention_days=1)
    await trail.record(AuditEntry(time.time() - 3 * 86400, "cli:old", "PUT", "/x", "x", 200, None))
    await trail.record(AuditEntry(time.time(), "cli:new", "PUT", "/y", "y", 200, None))
    assert await trail.prune() == 1
    assert [e.who for e in await trail.entries()] == ["cli:new"]


async def test_cli_writes_are_recorded_as_the_local_user(database_url: str, tmp_path: Path) -> None:
    data = tmp_path / "data"
    running = await start_devprov(data, database_url)
    try:
        await asyncio.to_thread(cli, "group", "create", "fleet", "--data-dir", str(data))
        await asyncio.to_thread(
            cli, "credential-policy", "create", "certs", "--data-dir", str(data)
        )
        await asyncio.to_thread(cli, "group", "show", "fleet", "--data-dir", str(data))
        failed = await asyncio.to_thread(
            cli, "enrollment", "delete", "ghost", "--data-dir", str(data), check=False
        )
        assert failed.returncode == 1
        listed = await asyncio.to_thread(cli, "audit", "list", "--json", "--data-dir", str(data))
        async with session_for(running) as session:
            served = await _audit(Api(running, session))
    finally:
        await running.devprov.close()
    trail = json.loads(listed.stdout)
    assert served == trail
    seen = [(e["method"], e["path"], e["status"], e["peer"]) for e in trail]
    assert seen == [
        ("DELETE", "/enrollments/ghost", 404, "local"),
        ("PUT", "/credentialPolicies/certs", 200, "local"),
        ("PUT", "/enrollmentGroups/fleet", 200, "local"),
    ]
    assert all(str(e["who"]).startswith("cli:") for e in trail)
    ran = await asyncio.to_thread(cli, "audit", "list", "--limit", "1", "--data-dir", str(data))
    text = ran.stdout
    assert "/enrollments/ghost" in text and "fleet" not in text


def _ca_pem() -> str:
    from devprov import certmaker

    return certmaker.root_ca("audit test CA").pem().decode()


async def test_console_writes_are_recorded_as_the_signed_in_policy(api: Api) -> None:
    import ssl

    import aiohttp

    from tests.server.test_console import csrf_of, sign_in

    running = api.running
    context = ssl.create_default_context(cafile=running.ca)
    async with aiohttp.ClientSession(
        base_url=f"https://localhost:{running.port}",
        connector=aiohttp.TCPConnector(ssl=context),
        cookie_jar=aiohttp.CookieJar(unsafe=True),
    ) as http:
        await sign_in(http, running.connection_string)
        token = csrf_of(await (await http.get("/console/groups/new")).text())
        form = {"csrf": token, "id": "line-7", "attestation": "symmetricKey"}
        created = await http.post("/console/groups/new", data=form, allow_redirects=False)
        assert created.status == 303
        await http.post("/console/groups/line-7/delete", data={"csrf": token})

    trail = await _audit(api)
    seen = [(e["who"], e["method"], e["path"], e["resource"]) for e in trail[:2]]
    assert seen == [
        (f"console:{OWNER_POLICY}", "POST", "/console/groups/line-7/delete", "line-7"),
        (f"console:{OWNER_POLICY}", "POST", "/console/groups/new", None),
    ]


async def test_built_in_hub_rest_writes_are_recorded(api: Api) -> None:
    from tests.server.test_hub_api import HUB, hub_request

    running = api.running
    await running.service().link_hub(HUB)
    keys = {"type": "sas", "symmetricKey": {"primaryKey": ""}}
    status, created, _ = await hub_request(
        running, "PUT", "/devices/dev-1", {"deviceId": "dev-1", "authentication": keys}
    )
    assert status == 200
    await hub_request(running, "GET", "/devices/dev-1")
    await hub_request(running, "DELETE", "/devices/dev-1", authorization=None)

    trail = await _audit(api)
    seen = [(e["who"], e["method"], e["path"], e["resource"], e["status"]) for e in trail[:2]]
    assert seen == [
        ("-", "DELETE", f"//{HUB}/devices/dev-1", "dev-1", 401),
        (f"{HUB}/iothubowner", "PUT", f"//{HUB}/devices/dev-1", "dev-1", 200),
    ]
    assert created["authentication"]["symmetricKey"]["primaryKey"] not in json.dumps(trail)
