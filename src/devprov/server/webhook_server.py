"""A Python allocator function served as a custom allocation webhook speaking DPS's contract,
so the code devprov runs in-process (`--allocator`) also runs behind any DPS, or locally."""

from __future__ import annotations

import logging

from aiohttp import web

from devprov.allocation.functions import AllocatorFunction, call_function
from devprov.domain.json_text import JsonRefused, parse_json
from devprov.protocol.signature import HEADER, verify_signature

log = logging.getLogger(__name__)
MAX_REQUEST_BYTES = 1024 * 1024


def webhook_app(function: AllocatorFunction, secret: str | None = None) -> web.Application:
    """POST (any path) the AllocationRequest; the function's answer comes back as JSON. With a
    secret, a request whose X-Devprov-Signature does not verify is answered 401."""

    async def allocate(request: web.Request) -> web.StreamResponse:
        raw = await request.read()
        if secret is not None and not verify_signature(raw, request.headers.get(HEADER), secret):
            return web.json_response({"message": f"missing or bad {HEADER}"}, status=401)
        try:
            body = parse_json(raw)
        except JsonRefused:
            return web.json_response({"message": "the body is not JSON"}, status=400)
        if not isinstance(body, dict):
            return web.json_response({"message": "the body is not a JSON object"}, status=400)
        try:
            answer = await call_function(function, body)
        except Exception as error:
            log.exception("the allocator function failed")
            return web.json_response({"message": f"{type(error).__name__}: {error}"}, status=500)
        return web.json_response(answer)

    app = web.Application(client_max_size=MAX_REQUEST_BYTES)
    app.router.add_post("/{tail:.*}", allocate)
    return app
