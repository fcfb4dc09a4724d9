"""Small helpers the tests share: raw device requests with hand-made tokens, enrollments."""

from __future__ import annotations

import base64
import json
import ssl
import time
from typing import Any
from urllib.parse import quote

import aiohttp

from devprov.attestation.sas import sign
from devprov.domain.keys import derive_device_key
from tests.conftest import Running, Webhook


def device_token(
    resource: str, key_b64: str, *, ttl: int = 3600, style: str = "node", expiry: int | None = None
) -> str:
    """A SAS token written the way one official SDK writes it (`node`, `python` or `c`)."""
    se = expiry if expiry is not None else int(time.time()) + ttl
    if style == "node":
        sr = resource
    elif style == "python":
        sr = quote(resource, safe="")
    else:
        sr = quote(resource, safe="").replace("%2F", "%2f")
    sig = base64.b64encode(sign(base64.b64decode(key_b64), sr, se)).decode()
    if style == "python":
        return f"SharedAccessSignature sr={sr}&sig={quote(sig, safe='')}&se={se}"
    return f"SharedAccessSignature sr={sr}&sig={quote(sig, safe='')}&se={se}&skn=registration"


async def device_request(
    running: Running,
    method: str,
    path: str,
    *,
    body: Any = None,
    raw: bytes | None = None,
    authorization: str | None = None,
    content_type: str = "application/json; charset=utf-8",
) -> tuple[int, Any, dict[str, str]]:
    headers = {"Content-Type": content_type}
    if authorization:
        headers["Authorization"] = authorization
    data = raw if raw is not None else (json.dumps(body).encode() if body is not None else b"")
    context = ssl.create_default_context(cafile=running.ca)
    url = f"https://localhost:{running.port}{path}"
    async with (
        aiohttp.ClientSession(connector=aiohttp.TCPConnector(ssl=context)) as http,
        http.request(method, url, data=data, headers=headers) as response,
    ):
        text = await response.read()
        parsed = json.loads(text) if text else None
        return response.status, parsed, dict(response.headers)


async def register(
    running: Running,
    registration_id: str,
    key_b64: str,
    *,
    payload: Any = None,
    style: str = "node",
    authorization: str | None = None,
) -> tuple[int, Any, dict[str, str]]:
    resource = f"{running.id_scope}/registrations/{registration_id}"
    body: dict[str, Any] = {"registrationId": registration_id}
    if payload is not None:
        body["payload"] = payload
    return await device_request(
        running,
        "PUT",
        f"/{running.id_scope}/registrations/{registration_id}/register?api-version=2019-03-31",
        body=body,
        authorization=authorization or device_token(resource, key_b64, style=style),
    )


async def create_group(running: Running, group_id: str, **fields: Any) -> dict[str, Any]:
    body = {"enrollmentGroupId": group_id, "attestation": {"type": "symmetricKey"}, **fields}
    group: dict[str, Any] = await running.service().put_group(body)
    return group


async def create_enrollment(
    running: Running, registration_id: str, **fields: Any
) -> dict[str, Any]:
    body = {"registrationId": registration_id, "attestation": {"type": "symmetricKey"}, **fields}
    enrollment: dict[str, Any] = await running.service().put_enrollment(body)
    return enrollment


def group_device_key(group: dict[str, Any], registration_id: str) -> str:
    return derive_device_key(group["attestation"]["symmetricKey"]["primaryKey"], registration_id)


def primary_key(enrollment: dict[str, Any]) -> str:
    key: str = enrollment["attestation"]["symmetricKey"]["primaryKey"]
    return key


async def custom_allocation(
    running: Running, webhook: Webhook, hubs: list[str], payload: Any
) -> dict[str, Any]:
    """Link `hubs`, have the webhook pick the first with `payload`; answers the enrollment
    fields for custom allocation through it."""
    for hub in hubs:
        await running.service().link_hub(hub)
    webhook.answer({"iotHubHostName": hubs[0], "payload": payload})
    return {
        "allocationPolicy": "custom",
        "customAllocationDefinition": {"webhookUrl": webhook.url, "apiVersion": "2021-10-01"},
    }
