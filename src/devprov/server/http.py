"""HTTP plumbing shared by both APIs: JSON bodies in and out, and errors in the Azure shape."""

from __future__ import annotations

import asyncio
import json
import logging
import uuid
from collections.abc import Awaitable, Callable
from http import HTTPStatus
from typing import Any

from aiohttp import ClientPayloadError, web
from aiohttp.http_exceptions import HttpProcessingError
from aiohttp.web_protocol import RequestHandler

from devprov.bounded_read import read_limited
from devprov.domain.errors import (
    INTERNAL_ERROR,
    MESSAGE_TOO_LARGE,
    MISSING_API_VERSION,
    REQUEST_TIMEOUT,
    UNSUPPORTED_MEDIA_TYPE,
    VALIDATION,
    Challenge,
    DpsError,
    invalid_json,
)
from devprov.domain.json_text import JsonRefused, parse_json
from devprov.protocol.dps import check_size, error_body
from devprov.server.guard import Gate, Guard, GuardedProtocol

log = logging.getLogger(__name__)
JSON_CONTENT_TYPE = "application/json; charset=utf-8"
TRACKING_ID = web.RequestKey("devprov.tracking_id", str)
GATE = web.AppKey("devprov.gate", Gate)
BODY_TIMEOUT = web.AppKey("devprov.body_timeout", float)
DEFAULT_BODY_TIMEOUT = 30.0


def json_response(
    body: Any, status: int = 200, headers: dict[str, str] | None = None
) -> web.Response:
    return web.Response(
        status=status,
        body=json.dumps(body, separators=(",", ":")).encode(),
        headers={"Content-Type": JSON_CONTENT_TYPE, **(headers or {})},
    )


def no_content() -> web.Response:
    """204 with no body at all: the Node service client's keep-alive parser breaks on one."""
    return web.Response(status=204)


def error_response(request: web.Request, error: DpsError) -> web.Response:
    tracking_id = request.get(TRACKING_ID) or str(uuid.uuid4())
    return json_response(
        error_body(error, tracking_id),
        status=error.status,
        headers={
            "x-ms-error-code": str(error.error_code),
            "x-ms-request-id": tracking_id,
            **({"Retry-After": str(error.retry_after)} if error.retry_after is not None else {}),
        },
    )


@web.middleware
async def azure_errors(
    request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
) -> web.StreamResponse:
    """Every refusal leaves in the Azure error shape; nothing else escapes as a stack trace."""
    request[TRACKING_ID] = str(uuid.uuid4())
    try:
        response = await handler(request)
    except DpsError as error:
        refused = error_response(request, error)
        if error.status == 408:
            refused.force_close()  # the rest of the body may still trickle in
        return refused
    except Challenge as challenge:
        return json_response(challenge.body, challenge.status)
    except web.HTTPRequestEntityTooLarge as exc:
        return error_response(
            request, DpsError(413, MESSAGE_TOO_LARGE, f"The request body is too large: {exc.text}")
        )
    except web.HTTPRedirection:
        raise  # the console's redirects after a form or to sign-in
    except web.HTTPException as exc:
        return error_response(request, DpsError(exc.status, exc.status * 1000, exc.reason))
    except (ConnectionError, ClientPayloadError, asyncio.IncompleteReadError) as exc:
        if request.transport is not None and not request.transport.is_closing():
            log.exception("unexpected error on %s %s", request.method, request.path)
            return error_response(
                request, DpsError(500, INTERNAL_ERROR, "Internal error; see the server log.")
            )
        # The client went away mid-request: nothing to answer, and not our bug.
        log.info("client left during %s %s: %s", request.method, request.path, exc)
        gone = error_response(request, DpsError(400, VALIDATION, f"The request broke off: {exc}."))
        gone.force_close()  # aiohttp drops it: there is no one to read it
        return gone
    except Exception:
        log.exception("unexpected error on %s %s", request.method, request.path)
        return error_response(
            request, DpsError(500, INTERNAL_ERROR, "Internal error; see the server log.")
        )
    response.headers.setdefault("x-ms-request-id", request[TRACKING_ID])
    return response


def require_api_version(request: web.Request) -> str:
    version = request.query.get("api-version")
    if not version:
        raise DpsError(400, MISSING_API_VERSION, "The api-version query parameter is required.")
    return version


async def read_body(request: web.Request, max_bytes: int) -> bytes:
    """The raw body, refused with 413 past `max_bytes`, with 415 if it is not JSON, and with 408
    when it does not arrive within the app's body timeout."""
    if request.content_length is not None:
        check_size(request.content_length, max_bytes)
    if request.content.is_eof():  # it came with the head (most do): no waiting, no deadline
        raw = await read_limited(request.content, max_bytes)
    else:
        raw = await _read_in_time(request, max_bytes)
    check_size(len(raw), max_bytes)
    content_type = request.headers.get("Content-Type", "")
    if raw.strip() and content_type and "json" not in content_type.lower():
        raise DpsError(
            415, UNSUPPORTED_MEDIA_TYPE, f"Bodies must be application/json, not {content_type!r}."
        )
    return raw


async def _read_in_time(request: web.Request, max_bytes: int) -> bytes:
    seconds = request.config_dict.get(BODY_TIMEOUT, DEFAULT_BODY_TIMEOUT)
    try:
        async with asyncio.timeout(seconds):
            return await read_limited(request.content, max_bytes)
    except TimeoutError:
        gate = request.config_dict.get(GATE)
        if gate is not None:
            gate.closed.count("request body timeout")
        raise DpsError(
            408, REQUEST_TIMEOUT, f"The request body did not arrive within {seconds:g} s."
        ) from None


async def read_json(request: web.Request, max_bytes: int, *, default: Any = None) -> Any:
    raw = await read_body(request, max_bytes)
    if not raw.strip():
        return default
    try:
        return parse_json(raw)
    except JsonRefused as exc:
        raise invalid_json(f"The request body is not valid JSON: {exc}.") from None


@web.middleware
async def connection_deadlines(
    request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
) -> web.StreamResponse:
    """A request whose head is in is no longer under the head deadline (see `HttpGuarded`)."""
    gate = request.config_dict.get(GATE)
    guard = gate.guard_of(request.transport) if gate is not None else None
    if guard is None:
        return await handler(request)
    guard.disarm()
    guard.busy += 1
    try:
        return await handler(request)
    finally:
        guard.busy -= 1


class AzureRequestHandler(RequestHandler):
    """aiohttp's connection handler, answering what its parser refuses (a malformed request
    line, headers too long, a bad Content-Length...) in the Azure error shape, not plain text."""

    __slots__ = ()

    def handle_error(
        self,
        request: Any,
        status: int = 500,
        exc: BaseException | None = None,
        message: str | None = None,
    ) -> web.StreamResponse:
        if status >= 500:
            log.error("error handling a request from %s", request.remote, exc_info=exc)
        else:
            log.info("refused a malformed request from %s: %s", request.remote, message or exc)
        if request.writer.output_size > 0:
            raise ConnectionError("the answer had started; the connection is dropped")
        if isinstance(exc, HttpProcessingError) and exc.message:
            message = exc.message
        phrase = HTTPStatus(status).phrase if status in HTTPStatus._value2member_map_ else ""
        error = DpsError(
            status,
            INTERNAL_ERROR if status >= 500 else status * 1000,
            f"The request is malformed: {message or phrase}."
            if status < 500
            else "Internal error; see the server log.",
        )
        tracking_id = str(uuid.uuid4())
        response = json_response(
            error_body(error, tracking_id),
            status=status,
            headers={"x-ms-error-code": str(error.error_code), "x-ms-request-id": tracking_id},
        )
        response.force_close()
        return response


class HttpGuarded(GuardedProtocol):
    """An HTTPS connection under its gate: once a request's first byte is in, its head must be
    complete within `header_timeout` (aiohttp's keep-alive time-out bounds the wait for that
    first byte; the body has `read_body`'s own deadline)."""

    def __init__(self, gate: Gate, inner: RequestHandler, header_timeout: float) -> None:
        inner.__class__ = AzureRequestHandler  # same slots: only handle_error differs
        super().__init__(gate, inner)
        self.header_timeout = header_timeout

    def data_received(self, data: bytes) -> None:
        guard: Guard | None = self.guard
        if guard is not None and guard.busy == 0 and not guard.armed:
            guard.arm(self.header_timeout, "request head timeout")
        super().data_received(data)
