"""The built-in hubs' REST API, as the official service SDKs use it: devices, twins, methods.

Requests are for the hub named by their Host header (the same listener serves DPS and every
built-in hub) and are signed with that hub's `iothubowner` key. Errors take IoT Hub's shape,
the legacy one the Node registry client can read (iothub-registry-rest.md §3):
`{"Message": "ErrorCode:DeviceNotFound;...", "ExceptionMessage": "Tracking ID:..."}` with the
`iothub-errorcode` header.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlsplit

from aiohttp import web

from devprov.domain.audit import UNKNOWN, AuditLog
from devprov.domain.errors import DpsError
from devprov.domain.hub_identities import HubError
from devprov.hub.auth import unauthorized
from devprov.hub.service import HubService, as_hub_error
from devprov.server.audit_trail import keep
from devprov.server.http import JSON_CONTENT_TYPE, json_response, no_content, read_json
from devprov.server.routing import Router
from devprov.server.service_auth import authorize

MAX_BODY_BYTES = 256 * 1024
HubCall = Callable[[web.Request, str, dict[str, str]], Awaitable[web.StreamResponse]]


def error_response(error: HubError) -> web.Response:
    tracking = str(uuid.uuid4())
    stamp = datetime.now(UTC).strftime("%m/%d/%Y %H:%M:%S")
    body = {
        "Message": f"ErrorCode:{error.name};{error.message}",
        "ExceptionMessage": f"Tracking ID:{tracking}-G:0-TimeStamp:{stamp}",
    }
    return web.Response(
        status=error.status,
        body=json.dumps(body).encode(),
        headers={
            "Content-Type": JSON_CONTENT_TYPE,
            "iothub-errorcode": error.name,
            "x-ms-request-id": tracking,
        },
    )


def host_of(request: web.Request) -> str:
    return (urlsplit("//" + request.host).hostname or "").lower()


class HubApi:
    """The REST routes; every write (devices, twins, method calls) goes to the audit trail,
    as `HUB/POLICY` with the path."""

    def __init__(self, hubs: HubService, audit: AuditLog | None = None) -> None:
        self.hubs = hubs
        self.audit = audit

    def _call(self, right: str, call: HubCall) -> Callable[..., Awaitable[web.StreamResponse]]:
        async def handled(request: web.Request, params: dict[str, str]) -> web.StreamResponse:
            who, status = UNKNOWN, 500
            try:
                hub = host_of(request)
                policy = await self.hubs.policy(hub)
                try:
                    authorize(
                        lambda name: policy if name.lower() == policy.key_name.lower() else None,
                        request.headers.get("Authorization"),
                        right,
                        {hub},
                    )
                except DpsError as error:
                    raise unauthorized(error.message) from None
                who = f"{hub}/{policy.key_name}"
                response = await call(request, hub, params)
                status = response.status
                return response
            except DpsError as error:
                response = error_response(as_hub_error(error))
                status = response.status
                return response
            finally:
                if request.method != "GET":
                    path = f"//{host_of(request)}{request.path}"
                    await keep(self.audit, request, who, params.get("id"), status, path)

        return handled

    def add_routes(self, router: Router) -> None:
        read, write, service = "RegistryRead", "RegistryWrite", "ServiceConnect"
        router.add("GET", "/devices", self._call(read, self.list_devices))
        router.add("PUT", "/devices/{id}", self._call(write, self.put_device))
        router.add("GET", "/devices/{id}", self._call(read, self.get_device))
        router.add("DELETE", "/devices/{id}", self._call(write, self.delete_device))
        router.add("GET", "/twins/{id}", self._call(read, self.get_twin))
        router.add("PATCH", "/twins/{id}", self._call(service, self.patch_twin))
        router.add("PUT", "/twins/{id}", self._call(service, self.replace_twin))
        router.add("POST", "/twins/{id}/methods", self._call(service, self.invoke_method))

    async def list_devices(
        self, request: web.Request, hub: str, params: dict[str, str]
    ) -> web.StreamResponse:
        top = request.query.get("top")
        limit = int(top) if top and top.isdigit() else None
        return json_response(await self.hubs.list_devices(hub, limit))

    async def put_device(
        self, request: web.Request, hub: str, params: dict[str, str]
    ) -> web.StreamResponse:
        body = await _body(request)
        device = await self.hubs.put_device(
            hub, params["id"], body, request.headers.get("If-Match")
        )
        return json_response(device)

    async def get_device(
        self, request: web.Request, hub: str, params: dict[str, str]
    ) -> web.StreamResponse:
        return json_response(await self.hubs.get_device(hub, params["id"]))

    async def delete_device(
        self, request: web.Request, hub: str, params: dict[str, str]
    ) -> web.StreamResponse:
        await self.hubs.delete_device(hub, params["id"], request.headers.get("If-Match"))
        return no_content()

    async def get_twin(
        self, request: web.Request, hub: str, params: dict[str, str]
    ) -> web.StreamResponse:
        return json_response(await self.hubs.get_twin(hub, params["id"]))

    async def patch_twin(
        self, request: web.Request, hub: str, params: dict[str, str]
    ) -> web.StreamResponse:
        body = await _body(request)
        if_match = request.headers.get("If-Match")
        return json_response(await self.hubs.patch_twin(hub, params["id"], body, if_match))

    async def replace_twin(
        self, request: web.Request, hub: str, params: dict[str, str]
    ) -> web.StreamResponse:
        body = await _body(request)
        if_match = request.headers.get("If-Match")
        twin = await self.hubs.patch_twin(hub, params["id"], body, if_match, replace=True)
        return json_response(twin)

    async def invoke_method(
        self, request: web.Request, hub: str, params: dict[str, str]
    ) -> web.StreamResponse:
        body = await _body(request)
        return json_response(await self.hubs.invoke_method(hub, params["id"], body))


async def _body(request: web.Request) -> Any:
    return await read_json(request, MAX_BODY_BYTES, default={})
