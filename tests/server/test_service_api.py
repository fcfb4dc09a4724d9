"""The service API over real HTTPS, raw: routes, auth, errors, etags, paging, bulk, linked hubs."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import ssl
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote

import aiohttp
import pytest
from multidict import CIMultiDict

from devprov.attestation.sas import build_sas, sign
from devprov.domain.keys import generate_key
from devprov.domain.policies import OWNER_POLICY, AccessPolicy
from devprov.instance import ensure_instance, save_instance
from tests.conftest import Running, start_devprov
from tests.helpers import group_device_key, register

API_VERSION = "2021-10-01"


@dataclass
class Reply:
    status: int
    raw: bytes
    headers: CIMultiDict[str]

    @property
    def json(self) -> Any:
        return json.loads(self.raw)


class Api:
    """Raw HTTPS calls to one running devprov, with a token of the chosen policy."""

    def __init__(self, running: Running, session: aiohttp.ClientSession) -> None:
        self.running = running
        self.session = session
        self.host = f"localhost:{running.port}"

    def policy_key(self, key_name: str = OWNER_POLICY, secondary: bool = False) -> str:
        policy = self.running.devprov.instance.policy(key_name)
        assert policy is not None
        return policy.secondary_key if secondary else policy.primary_key

    def token(self, key_name: str = OWNER_POLICY, **options: Any) -> str:
        return build_sas(self.host, self.policy_key(key_name), key_name=key_name, **options)

    async def call(
        self,
        method: str,
        path: str,
        body: Any = None,
        *,
        raw: bytes | None = None,
        headers: dict[str, str] | None = None,
        authorization: str | None = "owner",
        api_version: str | None = API_VERSION,
        content_type: str = "application/json",
    ) -> Reply:
        all_headers = {"Content-Type": content_type, **(headers or {})}
        if authorization == "owner":
            all_headers["Authorization"] = self.token()
        elif authorization is not None:
            all_headers["Authorization"] = authorization
        data = raw if raw is not None else (json.dumps(body).encode() if body is not None else b"")
        url = f"https://{self.host}{path}"
        if api_version is not None:
            url += ("&" if "?" in path else "?") + f"api-version={api_version}"
        async with self.session.request(method, url, data=data, headers=all_headers) as response:
            return Reply(response.status, await response.read(), CIMultiDict(response.headers))

    async def ok(self, method: str, path: str, body: Any = None, **options: Any) -> Any:
        reply = await self.call(method, path, body, **options)
        assert reply.status == 200, (reply.status, reply.raw)
        return reply.json


def session_for(running: Running) -> aiohttp.ClientSession:
    context = ssl.create_default_context(cafile=running.ca)
    return aiohttp.ClientSession(connector=aiohttp.TCPConnector(ssl=context))


@pytest.fixture
async def api(devprov: Running) -> AsyncIterator[Api]:
    async with session_for(devprov) as session:
        yield Api(devprov, session)


async def raw_exchange(api: Api, request: str) -> tuple[str, bytes]:
    """One request over a bare TLS stream: the response head, and every byte after it."""
    context = ssl.create_default_context(cafile=api.running.ca)
    reader, writer = await asyncio.open_connection("localhost", api.running.port, ssl=context)
    try:
        writer.write(request.encode())
        await writer.drain()
        received = await reader.read()
    finally:
        writer.close()
        with contextlib.suppress(OSError, ssl.SSLError):
            await writer.wait_closed()
    head, _, rest = received.partition(b"\r\n\r\n")
    return head.decode(), rest


def assert_azure_error(reply: Reply, status: int, code: int, words: str = "") -> dict[str, Any]:
    assert reply.status == status, (reply.status, reply.raw)
    assert reply.headers["Content-Type"].startswith("application/json")
    body: dict[str, Any] = reply.json
    assert body["errorCode"] == code, body
    assert isinstance(body["message"], str) and body["message"]
    assert words.lower() in body["message"].lower(), body
    assert body["trackingId"]
    assert reply.headers["x-ms-error-code"] == str(code)
    assert reply.headers["x-ms-request-id"] == body["trackingId"]
    return body


def enrollment(registration_id: str, **fields: Any) -> dict[str, Any]:
    return {"registrationId": registration_id, "attestation": {"type": "symmetricKey"}, **fields}


def group(group_id: str, **fields: Any) -> dict[str, Any]:
    return {"enrollmentGroupId": group_id, "attestation": {"type": "symmetricKey"}, **fields}


# Routing -------------------------------------------------------------------------------------


async def test_routes_ignore_case_and_ids_are_percent_decoded(api: Api) -> None:
    created = await api.ok("PUT", "/enrollmentgroups/Grp-A", group("Grp-A"))
    assert created["enrollmentGroupId"] == "Grp-A"
    for path in ("/enrollmentgroups/grp-a", "/EnrollmentGroups/GRP-A", "/ENROLLMENTGROUPS/Grp-A"):
        assert (await api.ok("GET", path))["enrollmentGroupId"] == "Grp-A", path
    keys = await api.ok("POST", "/enrollmentGroups/grp-a/AttestationMechanism")
    assert keys["symmetricKey"] == created["attestation"]["symmetricKey"]

    await api.ok("PUT", "/enrollments/dev%3Akitchen.1", enrollment("dev:kitchen.1"))
    got = await api.ok("GET", "/Enrollments/DEV%3akitchen.1")
    assert got["registrationId"] == "dev:kitchen.1"
    assert (await api.ok("GET", "/enrollments/dev:kitchen.1/"))["registrationId"] == "dev:kitchen.1"


async def test_body_id_must_match_path_id(api: Api) -> None:
    reply = await api.call("PUT", "/enrollments/dev-1", enrollment("dev-2"))
    assert_azure_error(reply, 400, 400005, "differs")
    reply = await api.call("PUT", "/enrollmentGroups/g%20x", group("g x"))
    assert_azure_error(reply, 400, 400004, "not valid")


async def test_an_id_ending_in_a_newline_is_refused(api: Api) -> None:
    """A path cannot carry one (aiohttp's catch-all route refuses it), but a bulk body can."""
    result = await api.ok(
        "POST", "/enrollments", {"mode": "create", "enrollments": [enrollment("dev-1\n")]}
    )
    assert [error["errorCode"] for error in result["errors"]] == [400004]
    assert await api.ok("POST", "/enrollments/query") == []


async def test_unknown_route_is_404_and_wrong_method_405(api: Api) -> None:
    for path in ("/nothing", "/enrollments/a/b/c", "/enrollments/a/attestation"):
        assert_azure_error(await api.call("GET", path), 404, 404000, "no resource")
    assert_azure_error(await api.call("GET", "/nothing", authorization=None), 404, 404000)
    assert_azure_error(await api.call("PATCH", "/enrollments/dev-1", {}), 405, 405000, "PATCH")
    assert_azure_error(await api.call("GET", "/enrollments"), 405, 405000)
    assert_azure_error(
        await api.call("PUT", "/enrollments/dev-1/attestationmechanism"), 405, 405000
    )


async def test_missing_api_version_is_400006(api: Api) -> None:
    reply = await api.call("GET", "/enrollments/dev-1", api_version=None)
    assert_azure_error(reply, 400, 400006, "api-version")
    reply = await api.call("PUT", "/enrollments/dev-1", enrollment("dev-1"), api_version=None)
    assert_azure_error(reply, 400, 400006)
    assert (await api.call("GET", "/enrollments/dev-1")).status == 404


# Authentication and rights -------------------------------------------------------------------


async def test_requests_without_a_valid_token_are_401(api: Api) -> None:
    owner = api.policy_key()
    expiry = int(time.time()) + 600
    signature = quote(base64.b64encode(sign(b"wrong", "x", expiry)).decode())
    refused = {
        "none": None,
        "bearer": "Bearer eyJhbGciOi.eyJzdWIi.c2ln",
        "garbage": "SharedAccessSignature garbage",
        "no-sig": f"SharedAccessSignature sr={api.host}&se={expiry}&skn={OWNER_POLICY}",
        "bad-base64": f"SharedAccessSignature sr={api.host}&sig=***&se={expiry}&skn=x",
        "no-skn": build_sas(api.host, owner),
        "unknown-policy": build_sas(api.host, owner, key_name="nobody"),
        "wrong-key": build_sas(api.host, generate_key(), key_name=OWNER_POLICY),
        "forged": f"SharedAccessSignature sr={api.host}&sig={signature}&se={expiry}"
        f"&skn={OWNER_POLICY}",
        "other-host": build_sas("other.example", owner, key_name=OWNER_POLICY),
        "other-host-same-prefix": build_sas("localhost.evil.example", owner, key_name=OWNER_POLICY),
    }
    for name, authorization in refused.items():
        reply = await api.call("GET", "/enrollments/dev-1", authorization=authorization)
        body = assert_azure_error(reply, 401, 401000)
        assert set(body) >= {"errorCode", "message", "trackingId"}, name
    expired = build_sas(api.host, owner, ttl_seconds=-10, key_name=OWNER_POLICY)
    reply = await api.call("GET", "/enrollments/dev-1", authorization=expired)
    assert_azure_error(reply, 401, 401001, "expired")


async def test_tokens_clients_write_are_accepted(api: Api) -> None:
    owner = api.policy_key()
    accepted = [
        build_sas(api.host, api.policy_key(secondary=True), key_name=OWNER_POLICY),
        build_sas("localhost", owner, key_name=OWNER_POLICY),
        build_sas(f"https://{api.host}", owner, key_name=OWNER_POLICY),
        build_sas(api.host.upper(), owner, key_name="ProvisioningServiceOwner"),
    ]
    for authorization in accepted:
        reply = await api.call("GET", "/enrollments/dev-1", authorization=authorization)
        assert reply.status == 404, (authorization, reply.raw)


async def test_a_policy_without_the_right_is_403(database_url: str, tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    instance = ensure_instance(data_dir)
    reader = AccessPolicy(
        key_name="enrollment-reader",
        primary_key=generate_key(),
        secondary_key=generate_key(),
        rights=["EnrollmentRead"],
    )
    save_instance(data_dir, instance.model_copy(update={"policies": [*instance.policies, reader]}))
    running = await start_devprov(data_dir, database_url)
    try:
        async with session_for(running) as session:
            api = Api(running, session)
            await api.ok("PUT", "/enrollments/dev-1", enrollment("dev-1"))
            token = api.token("enrollment-reader")
            assert (await api.ok("GET", "/enrollments/dev-1", authorization=token))[
                "registrationId"
            ] == "dev-1"
            await api.ok("POST", "/enrollments/query", {"query": "*"}, authorization=token)
            await api.ok("POST", "/enrollments/dev-1/attestationmechanism", authorization=token)
            denied = [
                ("PUT", "/enrollments/dev-1", enrollment("dev-1"), "EnrollmentWrite"),
                ("DELETE", "/enrollments/dev-1", None, "EnrollmentWrite"),
                ("POST", "/enrollments", {"mode": "delete", "enrollments": []}, "EnrollmentWrite"),
                ("GET", "/registrations/dev-1", None, "RegistrationStatusRead"),
                ("DELETE", "/registrations/dev-1", None, "RegistrationStatusWrite"),
                ("GET", "/linkedHubs", None, "ServiceConfig"),
                ("PUT", "/linkedHubs/hub.example", {}, "ServiceConfig"),
            ]
            for method, path, body, right in denied:
                reply = await api.call(method, path, body, authorization=token)
                assert_azure_error(reply, 403, 403002, right)
            assert (await api.ok("GET", "/enrollments/dev-1"))["registrationId"] == "dev-1"
    finally:
        await running.devprov.close()


# Enrollments: views, deletes, etags ----------------------------------------------------------


async def test_get_hides_keys_but_attestationmechanism_shows_them(api: Api) -> None:
    put = await api.ok("PUT", "/enrollments/dev-1", enrollment("dev-1", deviceId="device-1"))
    keys = put["attestation"]["symmetricKey"]
    assert keys["primaryKey"] and keys["secondaryKey"]
    got = await api.ok("GET", "/enrollments/dev-1")
    assert got["attestation"] == {"type": "symmetricKey"}
    assert got["registrationState"] == {"registrationId": "dev-1", "status": "unassigned"}
    assert (got["deviceId"], got["etag"]) == ("device-1", put["etag"])
    assert await api.ok("POST", "/enrollments/dev-1/attestationmechanism") == {
        "type": "symmetricKey",
        "symmetricKey": keys,
    }

    group_put = await api.ok("PUT", "/enrollmentGroups/grp-1", group("grp-1"))
    assert (await api.ok("GET", "/enrollmentGroups/grp-1"))["attestation"] == {
        "type": "symmetricKey"
    }
    assert (await api.ok("POST", "/enrollmentGroups/grp-1/attestationmechanism"))[
        "symmetricKey"
    ] == group_put["attestation"]["symmetricKey"]
    assert_azure_error(
        await api.call("POST", "/enrollmentGroups/none/attestationmechanism"), 404, 404204
    )


async def test_update_without_keys_keeps_them(api: Api) -> None:
    put = await api.ok("PUT", "/enrollments/dev-1", enrollment("dev-1"))
    got = await api.ok("GET", "/enrollments/dev-1")
    got["initialTwin"] = {"tags": {"room": "kitchen"}}
    updated = await api.ok("PUT", "/enrollments/dev-1", got, headers={"If-Match": got["etag"]})
    assert updated["attestation"]["symmetricKey"] == put["attestation"]["symmetricKey"]
    assert updated["initialTwin"] == {"tags": {"room": "kitchen"}}
    assert updated["createdDateTimeUtc"] == put["createdDateTimeUtc"]


async def test_delete_is_204_with_no_body(api: Api) -> None:
    await api.ok("PUT", "/enrollments/dev-1", enrollment("dev-1"))
    await api.ok("PUT", "/enrollmentGroups/grp-1", group("grp-1"))
    await api.ok("PUT", "/linkedHubs/hub.example", {})
    for path in ("/enrollments/dev-1", "/enrollmentGroups/grp-1", "/linkedHubs/hub.example"):
        reply = await api.call("DELETE", path)
        assert reply.status == 204, (path, reply.raw)
        assert reply.raw == b""
        assert reply.headers.get("Content-Length", "0") == "0"
    assert_azure_error(await api.call("GET", "/enrollments/dev-1"), 404, 404201)
    assert_azure_error(await api.call("GET", "/enrollmentGroups/grp-1"), 404, 404204)
    await api.ok("PUT", "/enrollments/dev-2", enrollment("dev-2"))
    head, rest = await raw_exchange(
        api,
        f"DELETE /enrollments/dev-2?api-version={API_VERSION} HTTP/1.1\r\n"
        f"Host: {api.host}\r\nAuthorization: {api.token()}\r\nConnection: close\r\n\r\n",
    )
    assert head.startswith("HTTP/1.1 204 "), head
    assert "transfer-encoding" not in head.lower()
    assert rest == b""  # nothing after the headers, not even an empty chunk
    assert_azure_error(await api.call("DELETE", "/enrollments/dev-1"), 404, 404201)
    assert_azure_error(await api.call("DELETE", "/enrollmentGroups/grp-1"), 404, 404204)
    assert_azure_error(await api.call("DELETE", "/registrations/dev-1"), 404, 404202)


async def test_if_match_raw_quoted_weak_and_star(api: Api) -> None:
    etag = (await api.ok("PUT", "/enrollments/dev-1", enrollment("dev-1")))["etag"]
    for form in ("{}", '"{}"', 'W/"{}"', "*"):
        reply = await api.call(
            "PUT",
            "/enrollments/dev-1",
            enrollment("dev-1", initialTwin={"tags": {"form": form}}),
            headers={"If-Match": form.format(etag)},
        )
        assert reply.status == 200, (form, reply.raw)
        assert reply.json["etag"] != etag
        etag = reply.json["etag"]
    assert (await api.ok("GET", "/enrollments/dev-1"))["initialTwin"] == {"tags": {"form": "*"}}


async def test_stale_if_match_is_412(api: Api) -> None:
    first = (await api.ok("PUT", "/enrollments/dev-1", enrollment("dev-1")))["etag"]
    second = (await api.ok("PUT", "/enrollments/dev-1", enrollment("dev-1", deviceId="d2")))["etag"]
    for stale in (first, f'"{first}"'):
        reply = await api.call(
            "PUT", "/enrollments/dev-1", enrollment("dev-1"), headers={"If-Match": stale}
        )
        assert_azure_error(reply, 412, 412001, "ETag")
        reply = await api.call("DELETE", "/enrollments/dev-1", headers={"If-Match": stale})
        assert_azure_error(reply, 412, 412001)
    got = await api.ok("GET", "/enrollments/dev-1")
    assert (got["etag"], got["deviceId"]) == (second, "d2")
    reply = await api.call(
        "PUT", "/enrollments/new-1", enrollment("new-1"), headers={"If-Match": first}
    )
    assert_azure_error(reply, 412, 412001)
    reply = await api.call("DELETE", "/enrollments/dev-1", headers={"If-Match": f'W/"{second}"'})
    assert reply.status == 204


# Request bodies ------------------------------------------------------------------------------


async def test_bodies_must_be_json(api: Api) -> None:
    reply = await api.call(
        "PUT", "/enrollments/dev-1", raw=b"registrationId=dev-1", content_type="text/plain"
    )
    assert_azure_error(reply, 415, 415001, "text/plain")
    reply = await api.call("PUT", "/enrollments/dev-1", raw=b'{"registrationId": "dev-1",')
    assert_azure_error(reply, 400, 400001, "not valid JSON")
    reply = await api.call("PUT", "/enrollments/dev-1", raw=b'["dev-1"]')
    assert_azure_error(reply, 400, 400004, "JSON object")
    reply = await api.call("PUT", "/enrollments/dev-1", {"registrationId": "dev-1"})
    assert_azure_error(reply, 400, 400004, "attestation")
    assert_azure_error(await api.call("GET", "/enrollments/dev-1"), 404, 404201)


async def test_a_body_that_arrives_in_pieces_is_read_whole(api: Api) -> None:
    twin = {"tags": {"blob": "x" * 20000}}
    body = json.dumps(enrollment("dev-1", initialTwin=twin)).encode()

    async def in_two_pieces() -> AsyncIterator[bytes]:
        yield body[:100]
        await asyncio.sleep(0.2)  # so that the first piece is read on its own
        yield body[100:]

    async with api.session.put(
        f"https://{api.host}/enrollments/dev-1?api-version={API_VERSION}",
        data=in_two_pieces(),
        headers={
            "Authorization": api.token(),
            "Content-Type": "application/json",
            "Content-Length": str(len(body)),
        },
    ) as response:
        assert response.status == 200, await response.read()
    assert (await api.ok("GET", "/enrollments/dev-1"))["initialTwin"] == twin


async def test_allocation_rules_are_enforced_over_http(api: Api) -> None:
    reply = await api.call("PUT", "/enrollmentGroups/g", group("g", allocationPolicy="custom"))
    assert_azure_error(reply, 400, 400004, "A CustomAllocationDefinition is required")
    reply = await api.call("PUT", "/enrollments/d", enrollment("d", iotHubs=["hub.example"]))
    assert_azure_error(reply, 400, 400004, "allocationPolicy must be specified")


# Bulk ---------------------------------------------------------------------------------------


async def test_bulk_create_update_delete(api: Api) -> None:
    created = await api.ok(
        "POST",
        "/enrollments/",
        {"mode": "create", "enrollments": [enrollment("b-1"), enrollment("b-2")]},
    )
    assert created == {"isSuccessful": True, "errors": []}
    assert (await api.ok("GET", "/enrollments/b-2"))["registrationId"] == "b-2"

    again = await api.ok(
        "POST",
        "/enrollments",
        {"mode": "create", "enrollments": [enrollment("B-1"), enrollment("b-3")]},
    )
    assert again["isSuccessful"] is False
    (error,) = again["errors"]
    assert (error["registrationId"], error["errorCode"]) == ("B-1", 409201)
    assert error["errorStatus"]
    assert (await api.ok("GET", "/enrollments/b-3"))["registrationId"] == "b-3"

    groups = await api.ok(
        "POST", "/EnrollmentGroups/", {"mode": "create", "enrollmentGroups": [group("bg-1")]}
    )
    assert groups == {"isSuccessful": True, "errors": []}

    deleted = await api.ok(
        "POST",
        "/enrollments",
        {"mode": "delete", "enrollments": [enrollment("b-1"), enrollment("gone")]},
    )
    assert deleted["isSuccessful"] is False
    assert [(e["registrationId"], e["errorCode"]) for e in deleted["errors"]] == [("gone", 404201)]
    assert_azure_error(await api.call("GET", "/enrollments/b-1"), 404, 404201)


async def test_bulk_takes_at_most_ten_items(api: Api) -> None:
    items = [enrollment(f"many-{number}") for number in range(11)]
    reply = await api.call("POST", "/enrollments", {"mode": "create", "enrollments": items})
    assert_azure_error(reply, 400, 400004, "at most 10")
    page = await api.ok("POST", "/enrollments/query", {"query": "SELECT *"})
    assert page == []
    ten = await api.ok("POST", "/enrollments", {"mode": "create", "enrollments": items[:10]})
    assert ten["isSuccessful"] is True
    reply = await api.call("POST", "/enrollments", {"mode": "upsert", "enrollments": []})
    assert_azure_error(reply, 400, 400004, "mode")


# Queries and paging -------------------------------------------------------------------------


async def query_all(
    api: Api, path: str, size: int, body: Any = None
) -> tuple[list[dict[str, Any]], list[Reply]]:
    items: list[dict[str, Any]] = []
    replies: list[Reply] = []
    headers = {"x-ms-max-item-count": str(size)}
    for _ in range(20):
        reply = await api.call("POST", path, body, headers=headers)
        assert reply.status == 200, reply.raw
        replies.append(reply)
        items.extend(reply.json)
        if "x-ms-continuation" not in reply.headers:
            return items, replies
        headers["x-ms-continuation"] = reply.headers["x-ms-continuation"]
    raise AssertionError("paging did not end")


async def test_query_pages_enrollments_and_groups(api: Api) -> None:
    ids = [f"q-{number}" for number in (4, 0, 3, 1, 2)]
    await api.ok(
        "POST", "/enrollments", {"mode": "create", "enrollments": [enrollment(i) for i in ids]}
    )
    items, replies = await query_all(api, "/enrollments/query", 2, {"query": "SELECT *"})
    assert [item["registrationId"] for item in items] == sorted(ids)
    assert [len(reply.json) for reply in replies] == [2, 2, 1]
    assert all(reply.headers["x-ms-item-type"] == "Enrollment" for reply in replies)
    assert all(item["attestation"] == {"type": "symmetricKey"} for item in items)
    assert all("registrationState" not in item for item in items)

    exact, replies = await query_all(api, "/enrollments/query", 5)
    assert len(exact) == 5 and len(replies) == 1
    assert "x-ms-continuation" not in replies[0].headers

    await api.ok(
        "POST",
        "/enrollmentGroups",
        {"mode": "create", "enrollmentGroups": [group("g-2"), group("g-1")]},
    )
    groups, replies = await query_all(api, "/enrollmentgroups/query", 1, {"query": "SELECT *"})
    assert [g["enrollmentGroupId"] for g in groups] == ["g-1", "g-2"]
    assert [r.headers["x-ms-item-type"] for r in replies] == ["EnrollmentGroup"] * 2
    assert all(g["attestation"] == {"type": "symmetricKey"} for g in groups)

    for bad in ("0", "-1", "many"):
        reply = await api.call("POST", "/enrollments/query", headers={"x-ms-max-item-count": bad})
        assert_azure_error(reply, 400, 400004, "x-ms-max-item-count")
    reply = await api.call("POST", "/enrollments/query", headers={"x-ms-continuation": "____"})
    assert_azure_error(reply, 400, 400004, "x-ms-continuation")


async def test_garbage_continuation_token_is_refused(api: Api) -> None:
    await api.ok("PUT", "/enrollments/dev-1", enrollment("dev-1"))
    for token in ("%%%", "not a token!"):
        reply = await api.call("POST", "/enrollments/query", headers={"x-ms-continuation": token})
        assert_azure_error(reply, 400, 400004, "x-ms-continuation")


async def test_query_answers_carry_x_ms_max_item_count(api: Api) -> None:
    await api.ok("PUT", "/enrollments/dev-1", enrollment("dev-1"))
    reply = await api.call("POST", "/enrollments/query", headers={"x-ms-max-item-count": "7"})
    assert reply.status == 200
    assert reply.headers["x-ms-max-item-count"] == "7"


async def test_registration_records_query_get_delete(api: Api) -> None:
    await api.ok("PUT", "/linkedHubs/hub.example", {})
    created = await api.ok("PUT", "/enrollmentGroups/fleet", group("fleet"))
    await api.ok("PUT", "/enrollmentGroups/other", group("other"))
    for registration_id in ("dev-c", "dev-a", "dev-b"):
        status, body, _ = await register(
            api.running, registration_id, group_device_key(created, registration_id)
        )
        assert status == 200 and body["status"] == "assigned", body

    records, replies = await query_all(api, "/registrations/FLEET/query", 2)
    assert [r["registrationId"] for r in records] == ["dev-a", "dev-b", "dev-c"]
    assert [r.headers["x-ms-item-type"] for r in replies] == ["DeviceRegistration"] * 2
    assert all(r["assignedHub"] == "hub.example" for r in records)
    node_style, _ = await query_all(api, "/registrations/fleet/query", 10, {"query": "*"})
    assert node_style == records
    assert (await query_all(api, "/registrations/other/query", 10))[0] == []

    record = await api.ok("GET", "/registrations/DEV-A")
    assert (record["registrationId"], record["status"]) == ("dev-a", "assigned")
    reply = await api.call("DELETE", "/registrations/dev-a", headers={"If-Match": "stale"})
    assert_azure_error(reply, 412, 412001)
    reply = await api.call("DELETE", "/registrations/dev-a", headers={"If-Match": record["etag"]})
    assert (reply.status, reply.raw) == (204, b"")
    assert_azure_error(await api.call("GET", "/registrations/dev-a"), 404, 404202)


# Linked hubs --------------------------------------------------------------------------------


async def test_linked_hubs_crud(api: Api) -> None:
    assert await api.ok("GET", "/linkedHubs") == []
    hub = await api.ok(
        "PUT",
        "/linkedHubs/Hub-A.example",
        {"allocationWeight": 5, "applyAllocationPolicy": False, "location": "westeurope"},
    )
    assert hub["hostName"] == "Hub-A.example"
    assert (hub["allocationWeight"], hub["applyAllocationPolicy"]) == (5, False)
    assert await api.ok("GET", "/linkedhubs/hub-a.EXAMPLE") == hub
    default = await api.ok("PUT", "/linkedHubs/hub-b.example", raw=b"")
    assert (default["allocationWeight"], default["applyAllocationPolicy"]) == (1, True)
    listed = await api.ok("GET", "/linkedHubs")
    assert [h["hostName"] for h in listed] == ["Hub-A.example", "hub-b.example"]

    for weight in (0, 1001, -1, "heavy"):
        reply = await api.call("PUT", "/linkedHubs/hub-a.example", {"allocationWeight": weight})
        assert_azure_error(reply, 400, 400004, "allocationWeight")
    assert (await api.ok("GET", "/linkedHubs/hub-a.example"))["allocationWeight"] == 5
    updated = await api.ok("PUT", "/linkedHubs/hub-a.example", {"allocationWeight": 1000})
    assert updated["allocationWeight"] == 1000

    reply = await api.call("DELETE", "/linkedHubs/HUB-A.example")
    assert (reply.status, reply.raw) == (204, b"")
    assert_azure_error(await api.call("GET", "/linkedHubs/hub-a.example"), 404, 404205)
    assert_azure_error(await api.call("DELETE", "/linkedHubs/hub-a.example"), 404, 404205)
    assert [h["hostName"] for h in await api.ok("GET", "/linkedHubs")] == ["hub-b.example"]
    assert await api.ok("GET", "/linkedHubs/hub-b.example/devices") == []
