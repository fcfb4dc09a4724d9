"""Keeping an HTTP write in the audit trail: one entry from the request, a failure logged."""

from __future__ import annotations

import logging
import time

from aiohttp import web

from devprov.domain.audit import AuditEntry, AuditLog

log = logging.getLogger(__name__)


async def keep(
    audit: AuditLog | None,
    request: web.Request,
    who: str,
    resource: str | None,
    status: int,
    path: str | None = None,
) -> None:
    """Record `request` (its method, `path` or its own, its peer) as `who`'s; a failure to is
    logged, never the caller's failure."""
    if audit is None:
        return
    where = path or request.path
    entry = AuditEntry(time.time(), who, request.method, where, resource, status, request.remote)
    try:
        await audit.record(entry)
    except Exception:
        log.exception("could not record %s %s in the audit trail", request.method, where)
