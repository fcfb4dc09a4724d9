"""The console's views of what happens: the overview, the live feed, registrations."""

from __future__ import annotations

import asyncio
import contextlib
import json
from typing import Any

from aiohttp import web

from devprov.domain.errors import REGISTRATION_NOT_FOUND, DpsError
from devprov.server.console.activity import feed_item
from devprov.server.console.web import PREFIX, Console, Context, redirect
from devprov.server.routing import Router

PAGE_SIZE = 50
FEED_BACKLOG = 50
KEEPALIVE_SECONDS = 15.0
READ_REGISTRATIONS = "RegistrationStatusRead"


def add_routes(console: Console, router: Router) -> None:
    router.add("GET", PREFIX + "/overview", console.page(overview))
    router.add("GET", PREFIX + "/feed", console.page(feed, READ_REGISTRATIONS))
    router.add("GET", PREFIX + "/feed/events", console.page(feed_events, READ_REGISTRATIONS))
    router.add("GET", PREFIX + "/registrations", console.page(registrations, READ_REGISTRATIONS))
    router.add(
        "GET", PREFIX + "/registrations/{id}", console.page(registration, READ_REGISTRATIONS)
    )
    router.add(
        "POST",
        PREFIX + "/registrations/{id}/delete",
        console.page(delete_registration, "RegistrationStatusWrite"),
    )


def chart(activity_minutes: list[tuple[int, Any]]) -> dict[str, Any]:
    """Bars for the last hour, one per minute, stacked: assigned, failed, refused."""
    peak = max((sum(counts.values()) for _, counts in activity_minutes), default=0) or 1
    height, width = 120, 8
    bars = []
    for index, (_minute, counts) in enumerate(activity_minutes):
        bottom = height
        for kind in ("assigned", "failed", "refused"):
            value = counts.get(kind, 0)
            if not value:
                continue
            size = max(1, round(value / peak * height))
            bottom -= size
            bars.append({"x": index * (width + 2), "y": bottom, "h": size, "kind": kind,
                         "title": f"{value} {kind}", "w": width})  # fmt: skip
    total = sum(sum(counts.values()) for _, counts in activity_minutes)
    return {"bars": bars, "peak": peak, "height": height, "width": 60 * (width + 2), "total": total}


async def overview(context: Context) -> web.StreamResponse:
    console = context.console
    activity = console.activity
    hubs = (
        await console.admin.list_linked_hubs() if "ServiceConfig" in context.session.rights else []
    )
    devices = await console.admin.devices_per_hub()
    outcomes = sorted(
        ((kind, code, count) for (kind, code), count in activity.outcomes.items()),
        key=lambda item: (item[0], item[1] or 0),
    )
    return context.render(
        "overview.html",
        chart=chart(activity.minutes()),
        outcomes=outcomes,
        hubs=hubs,
        devices=devices,
        health=activity.hubs,
        webhook={
            "calls": activity.webhook_calls,
            "p50": activity.webhook_percentile(0.5),
            "p95": activity.webhook_percentile(0.95),
            "errors": sorted(activity.webhook_errors.items()),
        },
        since=activity.started,
    )


async def feed(context: Context) -> web.StreamResponse:
    query = context.request.query
    return context.render(
        "feed.html",
        outcome=query.get("outcome", ""),
        q=query.get("q", ""),
        group=query.get("group", ""),
    )


def _wanted(item: dict[str, Any], query: Any) -> bool:
    outcome, prefix, group = query.get("outcome"), query.get("q"), query.get("group")
    if outcome and item["outcome"] != outcome:
        return False
    if prefix and not item["registrationId"].lower().startswith(prefix.lower()):
        return False
    return not group or (item["enrollmentGroup"] or "").lower() == group.lower()


async def feed_events(context: Context) -> web.StreamResponse:
    """Server-sent events: the last few outcomes, then each new one as it happens."""
    request, activity = context.request, context.console.activity
    response = web.StreamResponse(
        headers={
            "Content-Type": "text/event-stream",
            "Cache-Control": "no-store",
            "X-Accel-Buffering": "no",
        }
    )
    await response.prepare(request)
    queue = activity.feed.subscribe()
    try:
        for entry in reversed(activity.journal.recent(FEED_BACKLOG)):
            backlog = feed_item(entry)
            if _wanted(backlog, request.query):
                await response.write(_event({**backlog, "backlog": True}))
        while True:
            try:
                item: dict[str, Any] | None = await asyncio.wait_for(queue.get(), KEEPALIVE_SECONDS)
            except TimeoutError:
                await response.write(b": keep-alive\n\n")
                continue
            if item is None:  # devprov is stopping
                break
            if _wanted(item, request.query):
                await response.write(_event(item))
    except (ConnectionResetError, asyncio.CancelledError):
        pass
    finally:
        activity.feed.unsubscribe(queue)
    with contextlib.suppress(ConnectionResetError):
        await response.write_eof()
    return response


def _event(item: dict[str, Any]) -> bytes:
    return f"event: registration\ndata: {json.dumps(item, separators=(',', ':'))}\n\n".encode()


async def registrations(context: Context) -> web.StreamResponse:
    query = context.request.query
    q, group, after = query.get("q", ""), query.get("group", ""), query.get("after")
    found = await context.console.admin.search_registrations(
        q, group_id=group or None, after=after, size=PAGE_SIZE
    )
    return context.render("registrations.html", found=found, q=q, group=group, after=after)


async def registration(context: Context) -> web.StreamResponse:
    registration_id = context.params["id"]
    admin, journal = context.console.admin, context.console.activity.journal
    try:
        record: dict[str, Any] | None = await admin.get_registration(registration_id)
    except DpsError as error:
        if error.error_code != REGISTRATION_NOT_FOUND:
            raise
        record = None
    entry = journal.entry(registration_id)
    if record is None and entry is None:
        raise DpsError(
            404, REGISTRATION_NOT_FOUND, f"There is no registration of {registration_id!r}."
        )
    exchanges = [
        {"exchange": exchange, "answer": exchange.answer}
        for exchange in (entry.exchanges if entry else [])
    ]
    return context.render(
        "registration.html",
        registration_id=registration_id,
        record=record,
        entry=entry,
        exchanges=exchanges,
    )


async def delete_registration(context: Context) -> web.StreamResponse:
    await context.console.admin.delete_registration(context.params["id"], None)
    raise redirect(PREFIX + "/registrations", notice=f"Deleted {context.params['id']}.")
