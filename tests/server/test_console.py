"""The console over real HTTPS without a browser: sign-in, cookies, CSRF, rights, search."""

from __future__ import annotations

import asyncio
import json
import re
import ssl
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest

from devprov.admin import GROUP, INDIVIDUAL, Admin
from devprov.domain.policies import AccessPolicy
from devprov.server.console.auth import Sessions, policy_for
from devprov.server.console.redact import redact, redact_url
from tests.conftest import Running, start_devprov


@pytest.fixture
async def running(tmp_path: Path) -> AsyncIterator[Running]:
    started = await start_devprov(tmp_path / "data", f"sqlite:///{tmp_path / 'devprov.db'}")
    yield started
    await started.devprov.close()


@pytest.fixture
async def http(running: Running) -> AsyncIterator[aiohttp.ClientSession]:
    context = ssl.create_default_context(cafile=running.ca)
    async with aiohttp.ClientSession(
        base_url=f"https://localhost:{running.port}",
        connector=aiohttp.TCPConnector(ssl=context),
        cookie_jar=aiohttp.CookieJar(unsafe=True),
    ) as session:
        yield session


async def sign_in(http: aiohttp.ClientSession, credential: str) -> aiohttp.ClientResponse:
    return await http.post("/console/login", data={"credential": credential}, allow_redirects=False)


def csrf_of(html: str) -> str:
    found = re.search(r'name="csrf-token" content="([^"]+)"', html)
    assert found, html[:500]
    return found.group(1)


async def test_sign_in_sets_a_strict_cookie_and_pages_need_it(
    running: Running, http: aiohttp.ClientSession
) -> None:
    answer = await http.get("/console/overview", allow_redirects=False)
    assert answer.status == 303 and answer.headers["Location"].startswith("/console/login")
    refused = await sign_in(http, "SharedAccessKey=bm90LWEta2V5")
    assert refused.status == 303 and "error=" in refused.headers["Location"]

    key = running.devprov.instance.policies[0].secondary_key  # a bare key works too
    answer = await sign_in(http, key)
    assert answer.status == 303 and answer.headers["Location"] == "/console/overview"
    cookie = answer.headers["Set-Cookie"]
    for attribute in ("HttpOnly", "Secure", "SameSite=Strict", "Path=/console"):
        assert attribute in cookie, cookie
    page = await http.get("/console/overview")
    assert page.status == 200 and "Overview" in await page.text()
    assert page.headers["Cache-Control"] == "no-store"
    assert "frame-ancestors 'none'" in page.headers["Content-Security-Policy"]


async def test_writes_need_the_csrf_token_and_this_origin(
    running: Running, http: aiohttp.ClientSession
) -> None:
    await sign_in(http, running.connection_string)
    token = csrf_of(await (await http.get("/console/hubs")).text())
    refused = await http.post("/console/hubs", data={"hostName": "a.example"})
    assert refused.status == 403
    foreign = await http.post(
        "/console/hubs",
        data={"hostName": "a.example", "csrf": token},
        headers={"Origin": "https://evil.example"},
        allow_redirects=False,
    )
    assert foreign.status == 403
    linked = await http.post(
        "/console/hubs", data={"hostName": "a.example", "csrf": token}, allow_redirects=False
    )
    assert linked.status == 303
    assert [hub["hostName"] for hub in await running.service().call("GET", "/linkedHubs")] == [
        "a.example"
    ]
    mistake = await http.post(
        "/console/hubs", data={"hostName": "", "csrf": token, "back": "/console/hubs"},
        allow_redirects=False,
    )  # fmt: skip
    assert mistake.status == 303 and "error=400004" in mistake.headers["Location"]


async def test_a_policy_without_a_right_sees_403(running: Running) -> None:
    reader = AccessPolicy(
        key_name="reader",
        primary_key="cmVhZGVyLXByaW1hcnkta2V5LXJlYWRlci1wcmltYXJ5",
        secondary_key="cmVhZGVyLXNlY29uZGFyeS1rZXktcmVhZGVyLXNlY29u",
        rights=["EnrollmentRead"],
    )
    running.devprov.instance.policies.append(reader)
    context = ssl.create_default_context(cafile=running.ca)
    async with aiohttp.ClientSession(
        base_url=f"https://localhost:{running.port}",
        connector=aiohttp.TCPConnector(ssl=context),
    ) as http:
        await sign_in(http, "SharedAccessKeyName=reader;SharedAccessKey=" + reader.primary_key)
        assert (await http.get("/console/groups")).status == 200
        denied = await http.get("/console/hubs")
        assert denied.status == 403 and "lacks ServiceConfig" in await denied.text()


async def test_keys_only_on_request_and_logout_ends_the_session(
    running: Running, http: aiohttp.ClientSession
) -> None:
    group = await running.service().put_group(
        {"enrollmentGroupId": "fleet", "attestation": {"type": "symmetricKey"}}
    )
    key = group["attestation"]["symmetricKey"]["primaryKey"]
    cookie = (await sign_in(http, running.connection_string)).cookies["devprov_console"].value
    page = await (await http.get("/console/groups/fleet")).text()
    assert key not in page and "Show keys" in page
    assert key in await (await http.get("/console/groups/fleet?keys=1")).text()

    await http.post("/console/logout", data={"csrf": csrf_of(page)})
    replayed = await http.get(
        "/console/overview", headers={"Cookie": f"devprov_console={cookie}"}, allow_redirects=False
    )
    assert replayed.status == 303  # the old cookie no longer works in this process


async def test_search_pages_through_many_records(running: Running) -> None:
    store = running.devprov.store
    admin = Admin(store)
    from devprov.domain.records import Kind, Put

    await store.write(
        [
            Put(Kind.ENROLLMENT, f"dev-{n:05d}", "e", {"registrationId": f"dev-{n:05d}",
                "attestation": {"type": "tpm", "tpm": {"endorsementKey": "ek"}}},
                {"attestation": "tpm"})
            for n in range(1200)
        ]
    )  # fmt: skip
    found = await admin.search(INDIVIDUAL, "DEV-001", size=50)
    assert found.total == 100 and len(found.items) == 50
    assert found.items[0]["registrationId"] == "dev-00100"
    rest = await admin.search(INDIVIDUAL, "dev-001", after=found.after, size=50)
    assert rest.items[0]["registrationId"] == "dev-00150" and rest.after is None
    assert (await admin.search(INDIVIDUAL, "", attestation="x509")).total == 0
    assert (await admin.search(GROUP, "dev")).total == 0


async def test_an_open_live_feed_does_not_hold_up_a_stop(tmp_path: Path) -> None:
    running = await start_devprov(tmp_path / "data", f"sqlite:///{tmp_path / 'devprov.db'}")
    context = ssl.create_default_context(cafile=running.ca)
    async with aiohttp.ClientSession(
        base_url=f"https://localhost:{running.port}",
        connector=aiohttp.TCPConnector(ssl=context),
    ) as http:
        await sign_in(http, running.connection_string)
        feed = await http.get("/console/feed/events")
        assert feed.headers["Content-Type"] == "text/event-stream"
        await asyncio.wait_for(running.devprov.close(), 10)
        feed.close()


def test_credentials_and_cookies() -> None:
    policy = AccessPolicy(
        key_name="owner", primary_key="a2V5LW9uZQ==", secondary_key="a2V5LXR3bw=="
    )
    assert policy_for("a2V5LXR3bw==", [policy]) is policy
    assert policy_for("HostName=h;SharedAccessKeyName=owner;SharedAccessKey=a2V5LW9uZQ==", [policy])
    assert (
        policy_for("HostName=h;SharedAccessKeyName=other;SharedAccessKey=a2V5LW9uZQ==", [policy])
        is None
    )
    assert policy_for("", [policy]) is None
    sessions = Sessions(lambda: [policy])
    session, cookie = sessions.issue(policy)
    assert sessions.check(cookie) == session
    assert sessions.check(cookie[:-2] + "AA") is None
    assert sessions.check("garbage") is None
    rotated = Sessions(lambda: [policy.model_copy(update={"primary_key": "bmV3LWtleQ=="})])
    assert rotated.check(cookie) is None  # a new key ends the sessions the old one signed


def test_redaction() -> None:
    assert redact_url("https://u:p@hook.example:8443/a?code=s3cret&x=1") == (
        "https://hook.example:8443/a?code=***&x=***"
    )
    assert redact({"primaryKey": "k", "nested": [{"connectionString": "c"}], "n": 1,
                   "webhookUrl": "http://h/?code=c", "symmetricKey": {}}) == {
        "primaryKey": "***", "nested": [{"connectionString": "***"}], "n": 1,
        "webhookUrl": "http://h/?code=***", "symmetricKey": {}}  # fmt: skip


async def test_create_disable_edit_and_delete_a_group_through_forms(
    running: Running, http: aiohttp.ClientSession
) -> None:
    await sign_in(http, running.connection_string)
    token = csrf_of(await (await http.get("/console/groups/new")).text())
    form = {
        "csrf": token,
        "id": "line-7",
        "attestation": "symmetricKey",
        "allocationPolicy": "static",
        "iotHubs": "hub-1.example",
        "initialTwin": '{"tags": {"a": 1}}',
    }
    await running.service().link_hub("hub-1.example")
    created = await http.post("/console/groups/new", data=form, allow_redirects=False)
    assert created.headers["Location"].startswith("/console/groups/line-7")
    group = await running.service().call("GET", "/enrollmentGroups/line-7")
    assert (group["allocationPolicy"], group["iotHubs"]) == ("static", ["hub-1.example"])
    again = await http.post("/console/groups/new", data={**form, "back": "/x"},
                            allow_redirects=False)  # fmt: skip
    assert "error=409201" in again.headers["Location"]

    await http.post("/console/groups/line-7/status", data={"csrf": token, "enabled": "false"})
    group = await running.service().call("GET", "/enrollmentGroups/line-7")
    assert group["provisioningStatus"] == "disabled"
    edited = dict(group, initialTwin={"tags": {"b": 2}})
    await http.post(
        "/console/groups/line-7",
        data={"csrf": token, "document": json.dumps(edited), "etag": group["etag"]},
    )
    group = await running.service().call("GET", "/enrollmentGroups/line-7")
    assert group["initialTwin"] == {"tags": {"b": 2}}
    stale = await http.post(
        "/console/groups/line-7",
        data={"csrf": token, "document": json.dumps(edited), "etag": "old", "back": "/x"},
        allow_redirects=False,
    )
    assert "error=412001" in stale.headers["Location"]
    await http.post("/console/groups/line-7/delete", data={"csrf": token})
    listing = await (await http.get("/console/groups?q=line")).text()
    assert "line-7" not in listing
