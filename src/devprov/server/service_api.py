"""The service API, Azure-compatible: enrollments, groups, registration records, linked hubs;
and devprov's audit trail of the writes made through it (`GET /audit`)."""

from __future__ import annotations

import re
import time
from collections.abc import Awaitable, Callable
from typing import Any, Protocol

from aiohttp import web

from devprov.admin import GROUP, INDIVIDUAL, Admin, EnrollmentKind, Page, page_size
from devprov.attestation.sas import DEFAULT_MAX_LIFETIME_SECONDS
from devprov.domain.audit import UNKNOWN, AuditLog, parse_since
from devprov.domain.errors import INTERNAL_ERROR, DpsError, bad_request
from devprov.domain.policies import PolicyLookup
from devprov.server.activity_log import service_call
from devprov.server.audit_trail import keep
from devprov.server.http import (
    TRACKING_ID,
    json_response,
    no_content,
    read_json,
    require_api_version,
)
from devprov.server.routing import Router
from devprov.server.service_auth import authorize

MAX_SERVICE_BODY_BYTES = 4 * 1024 * 1024
_WRITES = {"EnrollmentWrite", "ServiceConfig"}
_AUDITED = {"EnrollmentWrite", "ServiceConfig", "RegistrationStatusWrite"}
_RESOURCE_PARAMS = ("id", "name", "hub")
ServiceCall = Callable[[web.Request, dict[str, str]], Awaitable[web.StreamResponse]]


class HubDevices(Protocol):
    """The device identities devprov's built-in hubs keep, as DPS wrote them."""

    async def identities(self, hub: str) -> list[dict[str, Any]]: ...

    async def identity(self, hub: str, device_id: str) -> dict[str, Any]: ...


def page_response(page: Page, item_type: str, size: int) -> web.Response:
    headers = {"x-ms-item-type": item_type, "x-ms-max-item-count": str(size)}
    if page.continuation:
        headers["x-ms-continuation"] = page.continuation
    return json_response(page.items, headers=headers)


class ServiceApi:
    def __init__(
        self,
        admin: Admin,
        policy_of: PolicyLookup,
        known_hosts: set[str],
        hub_devices: HubDevices,
        after_write: Callable[[], Awaitable[None]] | None = None,
        audit: AuditLog | None = None,
        max_token_lifetime: float = DEFAULT_MAX_LIFETIME_SECONDS,
    ) -> None:
        self.max_token_lifetime = max_token_lifetime
        self.admin = admin
        self.policy_of = policy_of
        self.known_hosts = known_hosts
        self.hub_devices = hub_devices
        self.after_write = after_write
        self.audit = audit

    def _guard(self, right: str, call: ServiceCall) -> ServiceCall:
        async def guarded(request: web.Request, params: dict[str, str]) -> web.StreamResponse:
            started = time.perf_counter()
            policy: str | None = None
            status, error_code = 500, INTERNAL_ERROR
            try:
                require_api_version(request)
                policy = authorize(
                    self.policy_of,
                    request.headers.get("Authorization"),
                    right,
                    self.known_hosts,
                    self.max_token_lifetime,
                )
                response = await call(request, params)
                if self.after_write is not None and request.method != "GET" and right in _WRITES:
                    await self.after_write()  # e.g. TLS must trust a new certificate at once
                status, error_code = response.status, 0
                return response
            except DpsError as error:
                status, error_code = error.status, error.error_code
                raise
            finally:
                service_call(
                    request.method,
                    request.path,
                    status,
                    time.perf_counter() - started,
                    tracking_id=request.get(TRACKING_ID),
                    policy=policy,
                    error_code=error_code or None,
                )
                if request.method != "GET" and right in _AUDITED:
                    resource = next((params[n] for n in _RESOURCE_PARAMS if n in params), None)
                    await keep(self.audit, request, policy or UNKNOWN, resource, status)

        return guarded

    async def list_audit(self, request: web.Request, params: dict[str, str]) -> web.Response:
        if self.audit is None:
            return json_response([])
        since = parse_since(request.query.get("since"))
        limit = request.query.get("limit", "100")
        if not re.fullmatch(r"[0-9]{1,4}", limit) or not 1 <= int(limit) <= 1000:
            raise bad_request("limit must be a whole number from 1 to 1000.")
        entries = await self.audit.entries(since, int(limit))
        return json_response([entry.to_wire() for entry in entries])

    def add_routes(self, router: Router) -> None:
        for spec, base in ((INDIVIDUAL, "/enrollments"), (GROUP, "/enrollmentGroups")):
            self._add_enrollment_routes(router, spec, base)
        read, write = "RegistrationStatusRead", "RegistrationStatusWrite"
        router.add("GET", "/registrations/{id}", self._guard(read, self.get_registration))
        router.add("DELETE", "/registrations/{id}", self._guard(write, self.delete_registration))
        router.add("POST", "/registrations/{id}/query", self._guard(read, self.query_registrations))
        config = "ServiceConfig"
        router.add("GET", "/linkedHubs", self._guard(config, self.list_linked_hubs))
        router.add("PUT", "/linkedHubs/{hub}", self._guard(config, self.put_linked_hub))
        router.add("GET", "/linkedHubs/{hub}", self._guard(config, self.get_linked_hub))
        router.add("DELETE", "/linkedHubs/{hub}", self._guard(config, self.delete_linked_hub))
        router.add("GET", "/linkedHubs/{hub}/devices", self._guard(config, self.list_hub_devices))
        router.add(
            "GET", "/linkedHubs/{hub}/devices/{device}", self._guard(config, self.get_hub_device)
        )
        self._add_certificate_routes(router)
        router.add("GET", "/audit", self._guard(config, self.list_audit))

    def _add_certificate_routes(self, router: Router) -> None:
        """Verified CAs (Azure keeps them in its control plane; devprov serves them here)."""
        admin = self.admin

        def guard(call: ServiceCall) -> ServiceCall:
            return self._guard("ServiceConfig", call)

        async def listing(request: web.Request, params: dict[str, str]) -> web.StreamResponse:
            return json_response({"value": await admin.list_cas()})

        async def put(request: web.Request, params: dict[str, str]) -> web.StreamResponse:
            body = await read_json(request, MAX_SERVICE_BODY_BYTES)
            return json_response(await admin.put_ca(params["name"], body))

        async def get(request: web.Request, params: dict[str, str]) -> web.StreamResponse:
            return json_response(await admin.get_ca(params["name"]))

        async def delete(request: web.Request, params: dict[str, str]) -> web.StreamResponse:
            await admin.delete_ca(params["name"])
            return no_content()

        async def code(request: web.Request, params: dict[str, str]) -> web.StreamResponse:
            return json_response(await admin.ca_verification_code(params["name"]))

        async def verify(request: web.Request, params: dict[str, str]) -> web.StreamResponse:
            body = await read_json(request, MAX_SERVICE_BODY_BYTES)
            return json_response(await admin.verify_ca(params["name"], body))

        router.add("GET", "/certificates", guard(listing))
        router.add("PUT", "/certificates/{name}", guard(put))
        router.add("GET", "/certificates/{name}", guard(get))
        router.add("DELETE", "/certificates/{name}", guard(delete))
        router.add("POST", "/certificates/{name}/generateVerificationCode", guard(code))
        router.add("POST", "/certificates/{name}/verify", guard(verify))

    def _add_enrollment_routes(self, router: Router, spec: EnrollmentKind[Any], base: str) -> None:
        admin = self.admin
        read, write = "EnrollmentRead", "EnrollmentWrite"

        async def put(request: web.Request, params: dict[str, str]) -> web.StreamResponse:
            body = await read_json(request, MAX_SERVICE_BODY_BYTES)
            record = await admin.put(spec, params["id"], body, request.headers.get("If-Match"))
            return json_response(record)

        async def get(request: web.Request, params: dict[str, str]) -> web.StreamResponse:
            return json_response(await admin.get(spec, params["id"]))

        async def delete(request: web.Request, params: dict[str, str]) -> web.StreamResponse:
            await admin.delete(spec, params["id"], request.headers.get("If-Match"))
            return no_content()

        async def attestation(request: web.Request, params: dict[str, str]) -> web.StreamResponse:
            return json_response(await admin.attestation(spec, params["id"]))

        async def bulk(request: web.Request, params: dict[str, str]) -> web.StreamResponse:
            body = await read_json(request, MAX_SERVICE_BODY_BYTES)
            return json_response(await admin.bulk(spec, body))

        async def query(request: web.Request, params: dict[str, str]) -> web.StreamResponse:
            await read_json(request, MAX_SERVICE_BODY_BYTES)
            size = page_size(request.headers.get("x-ms-max-item-count"))
            page = await admin.query(spec, request.headers.get("x-ms-continuation"), size)
            item_type = "Enrollment" if spec is INDIVIDUAL else "EnrollmentGroup"
            return page_response(page, item_type, size)

        router.add("POST", base + "/query", self._guard(read, query))
        router.add("POST", base, self._guard(write, bulk))
        router.add("PUT", base + "/{id}", self._guard(write, put))
        router.add("GET", base + "/{id}", self._guard(read, get))
        router.add("DELETE", base + "/{id}", self._guard(write, delete))
        router.add("POST", base + "/{id}/attestationmechanism", self._guard(read, attestation))

    async def get_registration(self, request: web.Request, params: dict[str, str]) -> web.Response:
        return json_response(await self.admin.get_registration(params["id"]))

    async def delete_registration(
        self, request: web.Request, params: dict[str, str]
    ) -> web.Response:
        await self.admin.delete_registration(params["id"], request.headers.get("If-Match"))
        return no_content()

    async def query_registrations(
        self, request: web.Request, params: dict[str, str]
    ) -> web.Response:
        await read_json(request, MAX_SERVICE_BODY_BYTES)
        size = page_size(request.headers.get("x-ms-max-item-count"))
        page = await self.admin.query_registrations(
            params["id"], request.headers.get("x-ms-continuation"), size
        )
        return page_response(page, "DeviceRegistration", size)

    async def list_linked_hubs(self, request: web.Request, params: dict[str, str]) -> web.Response:
        return json_response(await self.admin.list_linked_hubs())

    async def put_linked_hub(self, request: web.Request, params: dict[str, str]) -> web.Response:
        body = await read_json(request, MAX_SERVICE_BODY_BYTES, default={})
        return json_response(await self.admin.put_linked_hub(params["hub"], body))

    async def get_linked_hub(self, request: web.Request, params: dict[str, str]) -> web.Response:
        return json_response(await self.admin.get_linked_hub(params["hub"]))

    async def delete_linked_hub(self, request: web.Request, params: dict[str, str]) -> web.Response:
        await self.admin.delete_linked_hub(params["hub"])
        return no_content()

    async def list_hub_devices(self, request: web.Request, params: dict[str, str]) -> web.Response:
        return json_response(await self.hub_devices.identities(params["hub"]))

    async def get_hub_device(self, request: web.Request, params: dict[str, str]) -> web.Response:
        return json_response(await self.hub_devices.identity(params["hub"], params["device"]))
