"""The console's plumbing: pages rendered from templates, sign-in, rights, CSRF, headers.

Pages are server-rendered HTML (Jinja2, autoescaped); the live feed is server-sent events read
by a small script. Every page needs a session (else: the sign-in page) and the right its data
needs; every write is a POST carrying the session's CSRF token from this origin, and is logged
as a service call made through the console.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from importlib import resources
from typing import Any
from urllib.parse import quote, urlencode

import jinja2
from aiohttp import web

from devprov.admin import Admin
from devprov.domain.audit import AuditLog
from devprov.domain.errors import DpsError
from devprov.domain.policies import AccessPolicy
from devprov.server.activity_log import service_call
from devprov.server.audit_trail import keep
from devprov.server.console.activity import Activity
from devprov.server.console.auth import COOKIE, SESSION_SECONDS, Session, Sessions, policy_for
from devprov.server.console.redact import redact, redact_url
from devprov.server.http import TRACKING_ID
from devprov.server.routing import Router

log = logging.getLogger(__name__)
PREFIX = "/console"
STATIC_TYPES = {".css": "text/css", ".js": "text/javascript"}
SECURITY_HEADERS = {
    "Cache-Control": "no-store",
    "Content-Security-Policy": "default-src 'self'; img-src 'self' data:; style-src 'self';"
    " script-src 'self'; frame-ancestors 'none'; form-action 'self'; base-uri 'none'",
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "same-origin",
}
Page = Callable[["Context"], Awaitable[web.StreamResponse]]


@dataclass
class Context:
    """One console request: the aiohttp request, its path parameters, its session."""

    request: web.Request
    params: dict[str, str]
    session: Session
    console: Console

    async def form(self) -> dict[str, str]:
        data = await self.request.post()
        return {key: value for key, value in data.items() if isinstance(value, str)}

    def render(self, template: str, **values: Any) -> web.Response:
        return self.console.render(template, session=self.session, request=self.request, **values)


def redirect(path: str, **query: str | None) -> web.HTTPSeeOther:
    given = {key: value for key, value in query.items() if value}
    return web.HTTPSeeOther(path + ("?" + urlencode(given) if given else ""))


def _pretty(value: Any) -> str:
    return json.dumps(value, indent=2, ensure_ascii=False, sort_keys=False, default=str)


def _ms(seconds: float | None) -> str:
    return "" if seconds is None else f"{seconds * 1000:.1f} ms"


def _when(epoch: float | None) -> str:
    return "" if not epoch else time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(epoch)) + " UTC"


class Console:
    """The console's pages over the management rules (`Admin`) and the recent past
    (`Activity`); `policies` lists the instance's shared access policies."""

    def __init__(
        self,
        admin: Admin,
        policies: Callable[[], list[AccessPolicy]],
        activity: Activity,
        *,
        id_scope: str,
        connector_kinds: list[str],
        after_write: Callable[[], Awaitable[None]] | None = None,
        audit: AuditLog | None = None,
    ) -> None:
        self.audit = audit
        self.admin = admin
        self.policies = policies
        self.activity = activity
        self.sessions = Sessions(policies)
        self.id_scope = id_scope
        self.connector_kinds = connector_kinds
        self.after_write = after_write
        self.templates = jinja2.Environment(
            loader=jinja2.PackageLoader("devprov.server.console", "templates"),
            autoescape=jinja2.select_autoescape(default=True, default_for_string=True),
        )
        self.templates.filters.update(
            pretty=_pretty,
            ms=_ms,
            when=_when,
            redact=redact,
            redact_url=redact_url,
            urlquote=lambda v: quote(str(v), ""),
        )

    def render(self, template: str, **values: Any) -> web.Response:
        request: web.Request | None = values.get("request")
        query = request.query if request is not None else {}
        values.setdefault("notice", query.get("notice"))
        values.setdefault("error", query.get("error"))
        html = self.templates.get_template(template).render(id_scope=self.id_scope, **values)
        return web.Response(
            text=html, content_type="text/html", charset="utf-8", headers=SECURITY_HEADERS
        )

    # Routes -----------------------------------------------------------------------------

    def add_routes(self, router: Router) -> None:
        from devprov.server.console import pages, records

        router.add("GET", PREFIX, self._home)
        router.add("GET", PREFIX + "/login", self._login_page)
        router.add("POST", PREFIX + "/login", self._login)
        router.add("POST", PREFIX + "/logout", self.page(self._logout))
        router.add("GET", PREFIX + "/static/{name}", self._static)
        pages.add_routes(self, router)
        records.add_routes(self, router)

    def page(self, handler: Page, right: str | None = None) -> Any:
        """A console handler behind the session, the right and (for writes) the CSRF token."""

        async def guarded(request: web.Request, params: dict[str, str]) -> web.StreamResponse:
            session = self.sessions.check(request.cookies.get(COOKIE))
            if session is None:
                if request.method != "GET":
                    return self._forbidden(request, None, "Your session has ended: sign in again.")
                raise redirect(PREFIX + "/login", next=request.path_qs)
            if right is not None and right not in session.rights:
                return self._forbidden(
                    request, session, f"The policy {session.policy.key_name!r} lacks {right}."
                )
            context = Context(request, params, session, self)
            if request.method == "GET":
                return await self._answer(handler, context)
            if not await self._csrf_ok(request, session):
                return self._forbidden(request, session, "This form is stale: reload the page.")
            return await self._write(handler, context)

        return guarded

    async def _answer(self, handler: Page, context: Context) -> web.StreamResponse:
        try:
            return await handler(context)
        except DpsError as error:
            response = context.render("error.html", failure=error, error=None)
            response.set_status(error.status)
            return response

    async def _write(self, handler: Page, context: Context) -> web.StreamResponse:
        request = context.request
        started = time.perf_counter()
        status, code = 500, None
        try:
            response = await handler(context)
            status = response.status
            if self.after_write is not None:
                await self.after_write()
            return response
        except web.HTTPException as done:  # a redirect after a write that went well
            status = done.status
            if self.after_write is not None and status < 400:
                await self.after_write()
            raise
        except DpsError as error:
            status, code = error.status, error.error_code
            form = await context.form()
            back = form.get("back") or request.path
            raise redirect(back, error=f"{error.error_code}: {error.message}") from None
        finally:
            service_call(
                request.method,
                request.path,
                status,
                time.perf_counter() - started,
                tracking_id=request.get(TRACKING_ID),
                policy=context.session.policy.key_name,
                error_code=code,
                via="console",
            )
            who = f"console:{context.session.policy.key_name}"
            resource = next(iter(context.params.values()), None)
            await keep(self.audit, request, who, resource, status)

    async def _csrf_ok(self, request: web.Request, session: Session) -> bool:
        origin = request.headers.get("Origin")
        if origin is not None and origin.split("://", 1)[-1].lower() != request.host.lower():
            return False
        data = await request.post()
        token = data.get("csrf") or request.headers.get("X-CSRF-Token", "")
        return isinstance(token, str) and token == session.csrf_token()

    def _forbidden(
        self, request: web.Request, session: Session | None, message: str
    ) -> web.Response:
        error = DpsError(403, 403002, message)
        response = self.render(
            "error.html", session=session, request=request, failure=error, error=None
        )
        response.set_status(403)
        return response

    # Sign-in ----------------------------------------------------------------------------

    async def _home(self, request: web.Request, params: dict[str, str]) -> web.StreamResponse:
        raise redirect(PREFIX + "/overview")

    async def _login_page(self, request: web.Request, params: dict[str, str]) -> web.StreamResponse:
        return self.render(
            "login.html",
            session=None,
            request=request,
            next=_local(request.query.get("next")),
            error=request.query.get("error"),
        )

    async def _login(self, request: web.Request, params: dict[str, str]) -> web.StreamResponse:
        data = await request.post()
        credential, wanted = data.get("credential"), data.get("next")
        target = _local(wanted if isinstance(wanted, str) else None)
        origin = request.headers.get("Origin")
        if origin is not None and origin.split("://", 1)[-1].lower() != request.host.lower():
            raise web.HTTPForbidden(text="Sign in from this console's own page.")
        policy = policy_for(credential, self.policies()) if isinstance(credential, str) else None
        if policy is None:
            log.info("console sign-in refused")
            raise redirect(
                PREFIX + "/login", error="That is not a key of this devprov.", next=target
            )
        _, cookie = self.sessions.issue(policy)
        response = web.HTTPSeeOther(target)
        response.set_cookie(
            COOKIE,
            cookie,
            max_age=SESSION_SECONDS,
            path=PREFIX,
            secure=True,
            httponly=True,
            samesite="Strict",
        )
        log.info("console sign-in with policy %s", policy.key_name)
        raise response

    async def _logout(self, context: Context) -> web.StreamResponse:
        self.sessions.revoke(context.session)
        response = web.HTTPSeeOther(PREFIX + "/login")
        response.del_cookie(COOKIE, path=PREFIX)
        raise response

    async def _static(self, request: web.Request, params: dict[str, str]) -> web.StreamResponse:
        name = params["name"]
        suffix = name[name.rfind(".") :] if "." in name else ""
        if "/" in name or suffix not in STATIC_TYPES:
            raise web.HTTPNotFound()
        resource = resources.files("devprov.server.console") / "static" / name
        if not resource.is_file():
            raise web.HTTPNotFound()
        return web.Response(
            body=resource.read_bytes(),
            content_type=STATIC_TYPES[suffix],
            headers={"Cache-Control": "max-age=300", "X-Content-Type-Options": "nosniff"},
        )


def _local(target: str | None) -> str:
    """Only a console path may follow sign-in (never another site)."""
    if target and target.startswith(PREFIX + "/") and not target.startswith("//"):
        return target
    return PREFIX + "/overview"
