"""The built-in hub's REST API on the wire: who may call it, IoT Hub's error shape, devices,
twins and methods (the official service SDKs are driven in tests/interop/test_hub_*.py)."""

from __future__ import annotations

import json
import ssl
from typing import Any

import aiohttp
import pytest

from devprov.attestation.sas import build_sas
from devprov.domain.keys import generate_key
from devprov.hub.auth import parse_connection_string
from tests.conftest import Running

HUB = "hub-1.devprov.test"


async def hub_request(
    running: Running,
    method: str,
    path: str,
    body: Any = None,
    *,
    host: str = HUB,
    authorization: str | None = "owner",
    headers: dict[str, str] | None = None,
) -> tuple[int, Any, dict[str, str]]:
    """A request to the built-in hub `host`, signed with its iothubowner key by default."""
    if authorization == "owner":
        fields = parse_connection_string(await running.hub_connection_string(host))
        authorization = build_sas(host, fields["SharedAccessKey"], key_name="iothubowner")
    sent = {"Host": host, "Content-Type": "application/json", **(headers or {})}
    if authorization:
        sent["Authorization"] = authorization
    context = ssl.create_default_context(cafile=running.ca)
    url = f"https://localhost:{running.port}{path}?api-version=2021-04-12"
    data = json.dumps(body).encode() if body is not None else None
    async with (
        aiohttp.ClientSession(connector=aiohttp.TCPConnector(ssl=context)) as http,
        http.request(method, url, data=data, headers=sent, server_hostname="localhost") as answer,
    ):
        text = await answer.read()
        return answer.status, json.loads(text) if text else None, dict(answer.headers)


@pytest.fixture
async def hub(devprov: Running) -> Running:
    await devprov.service().link_hub(HUB)
    return devprov


def hub_error(status: int, body: Any, headers: dict[str, str], name: str) -> str:
    """IoT Hub's legacy error shape, which the Node registry client parses."""
    assert headers["iothub-errorcode"] == name
    message: str = body["Message"]
    assert message.startswith(f"ErrorCode:{name};")
    assert body["ExceptionMessage"].startswith("Tracking ID:")
    return message


@pytest.mark.parametrize(
    "authorization",
    [None, "SharedAccessSignature sr=x&sig=y&se=1", "dps-owner", "wrong-key"],
)
async def test_calls_without_the_hubs_policy_are_401(hub: Running, authorization: str) -> None:
    if authorization == "dps-owner":
        instance = hub.devprov.instance
        authorization = build_sas(
            HUB, instance.policies[0].primary_key, key_name=instance.policies[0].key_name
        )
    elif authorization == "wrong-key":
        authorization = build_sas(HUB, generate_key(), key_name="iothubowner")
    status, body, headers = await hub_request(hub, "GET", "/devices", authorization=authorization)
    assert status == 401
    hub_error(status, body, headers, "IotHubUnauthorizedAccess")


async def test_a_host_that_is_no_built_in_hub_is_404(hub: Running) -> None:
    await hub.service().link_hub("hub-2.devprov.test")
    authorization = build_sas("elsewhere.example", generate_key(), key_name="iothubowner")
    status, body, headers = await hub_request(
        hub, "GET", "/devices", host="elsewhere.example", authorization=authorization
    )
    assert status == 404
    hub_error(status, body, headers, "IotHubNotFound")


async def test_device_lifecycle(hub: Running) -> None:
    empty_keys = {"type": "sas", "symmetricKey": {"primaryKey": ""}}
    status, created, _ = await hub_request(
        hub, "PUT", "/devices/dev-1", {"deviceId": "dev-1", "authentication": empty_keys}
    )
    assert status == 200
    keys = created["authentication"]["symmetricKey"]
    assert keys["primaryKey"] and keys["secondaryKey"]  # empty keys are generated (Node sends "")
    assert created["status"] == "enabled" and created["connectionState"] == "Disconnected"

    status, body, headers = await hub_request(hub, "PUT", "/devices/dev-1", {"deviceId": "dev-1"})
    assert status == 409
    hub_error(status, body, headers, "DeviceAlreadyExists")

    stale = {"If-Match": '"not-the-etag"'}
    status, body, headers = await hub_request(hub, "PUT", "/devices/dev-1", created, headers=stale)
    assert status == 412

    disabled = {**created, "status": "disabled"}
    status, updated, _ = await hub_request(
        hub, "PUT", "/devices/dev-1", disabled, headers={"If-Match": '"*"'}
    )
    assert status == 200 and updated["status"] == "disabled"
    assert updated["authentication"]["symmetricKey"] == keys  # kept

    for path in ("/devices", "/devices/"):
        status, listed, _ = await hub_request(hub, "GET", path)
        assert [device["deviceId"] for device in listed] == ["dev-1"]

    status, _, _ = await hub_request(hub, "DELETE", "/devices/dev-1", headers={"If-Match": '"*"'})
    assert status == 204
    status, body, headers = await hub_request(hub, "GET", "/devices/dev-1")
    assert status == 404
    assert "dev-1" in hub_error(status, body, headers, "DeviceNotFound")


async def test_twin_patches_merge_and_malformed_ones_change_nothing(hub: Running) -> None:
    await hub_request(hub, "PUT", "/devices/dev-1", {"deviceId": "dev-1"})
    status, twin, _ = await hub_request(
        hub, "PATCH", "/twins/dev-1", {"tags": {"site": "a"}, "properties": {"desired": {"x": 1}}},
        headers={"If-Match": '"*"'},
    )  # fmt: skip
    assert status == 200
    assert twin["tags"] == {"site": "a"} and twin["properties"]["desired"]["x"] == 1
    assert twin["properties"]["desired"]["$version"] == 2

    for bad in (
        {"properties": {"desired": {"a.b": 1}}},
        {"properties": {"reported": {"x": 1}}},
        {"tags": "not an object"},
        {"properties": {"desired": {"n": 2**60}}},
    ):
        status, body, headers = await hub_request(hub, "PATCH", "/twins/dev-1", bad)
        assert status == 400, bad
        hub_error(status, body, headers, "ArgumentInvalid")
    status, after, _ = await hub_request(hub, "GET", "/twins/dev-1")
    assert after["version"] == twin["version"] and after["properties"] == twin["properties"]

    stale = {"If-Match": '"AAAAAAAAAAA="'}
    status, _, _ = await hub_request(hub, "PATCH", "/twins/dev-1", {"tags": {}}, headers=stale)
    assert status == 412

    status, replaced, _ = await hub_request(
        hub, "PUT", "/twins/dev-1", {"properties": {"desired": {"y": 2}}}
    )
    assert status == 200
    desired = {k: v for k, v in replaced["properties"]["desired"].items() if not k.startswith("$")}
    assert desired == {"y": 2} and replaced["tags"] == {"site": "a"}


async def test_a_method_on_a_device_that_is_not_connected_is_404(hub: Running) -> None:
    await hub_request(hub, "PUT", "/devices/dev-1", {"deviceId": "dev-1"})
    status, body, headers = await hub_request(
        hub, "POST", "/twins/dev-1/methods", {"methodName": "reboot", "payload": None}
    )
    assert status == 404
    hub_error(status, body, headers, "DeviceNotOnline")


async def test_the_hub_connection_string_is_never_shown_by_the_dps_api(hub: Running) -> None:
    shown = await hub.service().call("GET", f"/linkedHubs/{HUB}")
    assert shown["connector"] == "builtin" and "connectionString" not in shown
    listed = await hub.service().call("GET", "/linkedHubs")
    assert all("connectionString" not in item for item in listed)
    assert (await hub.hub_connection_string(HUB)).startswith(f"HostName={HUB};")
