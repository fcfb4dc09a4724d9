"""The aiohttp application: one catch-all route handed to devprov's case-insensitive router."""

from __future__ import annotations

from aiohttp import web

from devprov.server.guard import Gate
from devprov.server.http import (
    BODY_TIMEOUT,
    DEFAULT_BODY_TIMEOUT,
    GATE,
    azure_errors,
    connection_deadlines,
)
from devprov.server.routing import Router

CLIENT_MAX_SIZE = 8 * 1024 * 1024


def build_app(
    router: Router, gate: Gate | None = None, body_timeout: float = DEFAULT_BODY_TIMEOUT
) -> web.Application:
    app = web.Application(
        middlewares=[connection_deadlines, azure_errors], client_max_size=CLIENT_MAX_SIZE
    )
    if gate is not None:
        app[GATE] = gate
    app[BODY_TIMEOUT] = body_timeout

    async def dispatch(request: web.Request) -> web.StreamResponse:
        handler, params = router.resolve(request.method, request.raw_path)
        return await handler(request, params)

    app.router.add_route("*", "/{tail:.*}", dispatch)
    return app
