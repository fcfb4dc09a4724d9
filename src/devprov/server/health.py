"""Health for load balancers: /healthz (the process answers) and /readyz (it can serve).

Ready means the store answers, its schema is the one this devprov was built for (a newer
devprov may have migrated it meanwhile), and the node is not draining (stopping on SIGTERM: a
balancer must stop sending it devices at once). Both are open to anyone and say nothing secret.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable

from aiohttp import web

from devprov.server.http import json_response
from devprov.server.routing import Router

log = logging.getLogger(__name__)
READY_TIMEOUT_SECONDS = 5.0
SchemaRevision = Callable[[], Awaitable[str | None]]


def add_health_routes(
    router: Router,
    schema_revision: SchemaRevision,
    expected: str,
    draining: Callable[[], bool] = lambda: False,
) -> None:
    async def alive(request: web.Request, params: dict[str, str]) -> web.StreamResponse:
        return json_response({"status": "alive"})

    async def ready(request: web.Request, params: dict[str, str]) -> web.StreamResponse:
        if draining():
            return json_response({"status": "draining", "checks": {"node": "draining"}}, 503)
        checks: dict[str, str] = {}
        try:
            revision = await asyncio.wait_for(schema_revision(), READY_TIMEOUT_SECONDS)
        except Exception as error:  # whatever the driver raises: the store is not reachable
            log.warning("readiness: the store does not answer: %s", type(error).__name__)
            checks["store"] = f"unreachable ({type(error).__name__})"
        else:
            checks["store"] = "reachable"
            checks["schema"] = (
                "current" if revision == expected else f"at {revision}, expected {expected}"
            )
        ok = checks.get("store") == "reachable" and checks.get("schema") == "current"
        body = {"status": "ready" if ok else "not ready", "checks": checks}
        return json_response(body, 200 if ok else 503)

    router.add("GET", "/healthz", alive)
    router.add("GET", "/readyz", ready)
