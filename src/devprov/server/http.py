"""HTTP plumbing shared by both APIs: JSON bodies in and out, and errors in the Azure shape."""

from __future__ import annotations

import json
import logging
import uuid
from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import web

from devprov.bounded_read import read_limited
from devprov.domain.errors import (
    INTERNAL_ERROR,
    MESSAGE_TOO_LARGE,
    MISSING_API_VERSION,
    UNSUPPORTED_MEDIA_TYPE,
    Challenge,
    DpsError,
    invalid_json,
)
from devprov.domain.json_text import JsonRefused, parse_json
from devprov.protocol.dps import check_size, error_body

log = logging.getLogger(__name__)
JSON_CONTENT_TYPE = "application/json; charset=utf-8"
TRACKING_ID = web.RequestKey("devprov.tracking_id", str)


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
        headers={"x-ms-error-code": str(error.error_code), "x-ms-request-id": tracking_id},
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
        return error_response(request, error)
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
    """The raw body, refused with 413 past `max_bytes` and with 415 if it is not JSON."""
    if request.content_length is not None:
        check_size(request.content_length, max_bytes)
    raw = await read_limited(request.content, max_bytes)
    check_size(len(raw), max_bytes)
    content_type = request.headers.get("Content-Type", "")
    if raw.strip() and content_type and "json" not in content_type.lower():
        raise DpsError(
            415, UNSUPPORTED_MEDIA_TYPE, f"Bodies must be application/json, not {content_type!r}."
        )
    return raw


async def read_json(request: web.Request, max_bytes: int, *, default: Any = None) -> Any:
    raw = await read_body(request, max_bytes)
    if not raw.strip():
        return default
    try:
        return parse_json(raw)
    except JsonRefused as exc:
        raise invalid_json(f"The request body is not valid JSON: {exc}.") from None
