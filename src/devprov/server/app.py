"""The aiohttp application: one catch-all route handed to devprov's case-insensitive router."""

from __future__ import annotations

from aiohttp import web

from devprov.server.http import azure_errors
from devprov.server.routing import Router

CLIENT_MAX_SIZE = 8 * 1024 * 1024


def build_app(router: Router) -> web.Application:
    app = web.Application(middlewares=[azure_errors], client_max_size=CLIENT_MAX_SIZE)

    async def dispatch(request: web.Request) -> web.StreamResponse:
        handler, params = router.resolve(request.method, request.raw_path)
        return await handler(request, params)

    app.router.add_route("*", "/{tail:.*}", dispatch)
    return app
