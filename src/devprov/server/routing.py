"""Routing that matches the way DPS clients write paths: case-insensitive, percent-decoded ids."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass
from urllib.parse import unquote

from aiohttp import web

from devprov.domain.errors import METHOD_NOT_ALLOWED, ROUTE_NOT_FOUND, DpsError
from devprov.domain.ids import check_name

Handler = Callable[[web.Request, dict[str, str]], Awaitable[web.StreamResponse]]


@dataclass(frozen=True)
class Route:
    method: str
    segments: tuple[str, ...]
    handler: Handler

    def match(self, parts: list[str]) -> dict[str, str] | None:
        if len(parts) != len(self.segments):
            return None
        params: dict[str, str] = {}
        for pattern, part in zip(self.segments, parts, strict=True):
            if pattern.startswith("{"):
                params[pattern[1:-1]] = part
            elif pattern != part.lower():
                return None
        return params


class Router:
    """Routes grouped by their number of segments and their first segment: those that begin
    with a literal (`/enrollments/...`, `/console/...`) are found by it, and are tried before
    those that begin with a parameter (`/{idScope}/registrations/...`); within each, the first
    added that matches path and method wins. (The grouping keeps a device's register from being
    compared with every service API and console route first.)

    The Node service client writes `/enrollmentgroups/...`, the others `/enrollmentGroups/...`, and
    the C device client percent-encodes ids in the path, so literals are compared without case and
    each segment is decoded before it becomes a parameter.
    """

    def __init__(self) -> None:
        self.routes: dict[tuple[int, str | None], list[Route]] = {}

    def add(self, method: str, path: str, handler: Handler) -> None:
        segments = tuple(
            part if part.startswith("{") else part.lower() for part in path.strip("/").split("/")
        )
        first = None if segments[0].startswith("{") else segments[0]
        self.routes.setdefault((len(segments), first), []).append(
            Route(method.upper(), segments, handler)
        )

    def __iter__(self) -> Iterator[Route]:
        """Every route, in the order added within each group."""
        for routes in self.routes.values():
            yield from routes

    def _candidates(self, parts: list[str]) -> Iterator[Route]:
        yield from self.routes.get((len(parts), parts[0].lower()), ())
        yield from self.routes.get((len(parts), None), ())

    def resolve(self, method: str, raw_path: str) -> tuple[Handler, dict[str, str]]:
        path = raw_path.split("?", 1)[0]
        parts = [unquote(part) for part in path.strip("/").split("/")]
        path_matched = False
        for route in self._candidates(parts):
            params = route.match(parts)
            if params is None:
                continue
            path_matched = True
            if route.method == method.upper():
                for name, value in params.items():
                    check_name(value, name)
                return route.handler, params
        if path_matched:
            raise DpsError(405, METHOD_NOT_ALLOWED, f"{method} is not allowed on {path}.")
        raise DpsError(404, ROUTE_NOT_FOUND, f"There is no resource at {path}.")
