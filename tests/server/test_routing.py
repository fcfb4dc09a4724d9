"""The router: literals without case, decoded parameters, literal routes before parameter ones."""

from __future__ import annotations

import pytest
from aiohttp import web

from devprov.domain.errors import DpsError
from devprov.server.routing import Handler, Router


def handler(name: str) -> Handler:
    async def handle(request: web.Request, params: dict[str, str]) -> web.StreamResponse:
        return web.Response(text=name)

    handle.__name__ = name
    return handle


@pytest.fixture
def router() -> Router:
    router = Router()
    router.add("PUT", "/{idScope}/registrations/{registrationId}/register", handler("register"))
    router.add("GET", "/enrollments/{id}/attestationMechanism", handler("mechanism"))
    router.add("GET", "/{idScope}/registrations/{registrationId}", handler("status"))
    router.add("POST", "/enrollmentGroups/{id}/attestationMechanism", handler("group"))
    return router


def test_literals_ignore_case_and_parameters_are_decoded(router: Router) -> None:
    found, params = router.resolve("get", "/ENROLLMENTS/dev%201/attestationmechanism?x=1")
    assert found.__name__ == "mechanism"
    assert params == {"id": "dev 1"}
    found, params = router.resolve("PUT", "/0ne00000001/registrations/d-1/register")
    assert found.__name__ == "register"
    assert params == {"idScope": "0ne00000001", "registrationId": "d-1"}


def test_a_route_that_begins_with_a_literal_is_tried_first(router: Router) -> None:
    found, _ = router.resolve("GET", "/enrollments/x/attestationMechanism")
    assert found.__name__ == "mechanism"
    found, _ = router.resolve("GET", "/scope/registrations/x")
    assert found.__name__ == "status"


def test_a_known_path_with_another_method_is_405_and_an_unknown_one_404(router: Router) -> None:
    with pytest.raises(DpsError) as wrong_method:
        router.resolve("DELETE", "/enrollmentGroups/g/attestationMechanism")
    assert wrong_method.value.status == 405
    with pytest.raises(DpsError) as unknown:
        router.resolve("GET", "/nothing/here")
    assert unknown.value.status == 404


def test_every_route_is_listed(router: Router) -> None:
    assert sorted(route.handler.__name__ for route in router) == [
        "group", "mechanism", "register", "status",
    ]  # fmt: skip
