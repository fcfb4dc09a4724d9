"""The OpenAPI 3.1 document: valid, served, in step with the routes, and fuzzed against devprov.

The fuzz run (schemathesis, a bounded number of cases per operation) sends what the document
allows, and some of what it does not, to a real devprov on SQLite and on PostgreSQL (the stricter
store: no NUL in text): no answer may be a 5xx, every answer must have a documented status,
content type and body, and every refusal must be in the Azure error shape. `make soak` runs the
same with SOAK_CASES_PER_OPERATION.
"""

from __future__ import annotations

import asyncio
import os
import threading
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest
import requests
import schemathesis
from hypothesis import HealthCheck, settings
from openapi_spec_validator import validate
from schemathesis.checks import (
    content_type_conformance,
    not_a_server_error,
    response_schema_conformance,
    status_code_conformance,
)

from devprov.attestation.sas import build_sas
from devprov.client.service import parse_connection_string
from devprov.domain.models import ProvisioningServiceErrorDetails
from devprov.server.openapi import OPERATIONS, openapi_document
from devprov.server.routing import Router
from devprov.server.service_api import ServiceApi
from tests.conftest import PG_ADMIN, Running, free_port, start_devprov

FUZZ_CASES_PER_OPERATION = 5  # on each store
SOAK_CASES_PER_OPERATION = int(os.environ.get("DEVPROV_SCHEMA_CASES", "200"))


def test_the_document_is_valid_openapi_3_1() -> None:
    document = openapi_document()
    assert document["openapi"] == "3.1.0"
    validate(document)


def test_the_document_lists_exactly_the_service_api_routes() -> None:
    router = Router()
    ServiceApi(None, lambda _: None, set(), None).add_routes(router)  # type: ignore[arg-type]
    served = {(route.method, "/".join(route.segments)) for route in router}
    documented = {(op.method, op.path.strip("/").lower()) for op in OPERATIONS}
    assert documented == served


@pytest.fixture(scope="module")
def http() -> Iterator[requests.Session]:
    with requests.Session() as session:  # kept-alive: a TLS handshake per case costs more
        yield session


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def server(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Running]:
    """A devprov on its own event loop in a thread (the fuzzer's HTTP client blocks), on each
    store in turn."""
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    data: Path = tmp_path_factory.mktemp("openapi")
    name = f"devprov_test_{uuid.uuid4().hex[:12]}"
    if request.param == "sqlite":
        url = f"sqlite:///{data / 'devprov.db'}"
    else:
        with psycopg.connect(PG_ADMIN, autocommit=True) as admin:
            admin.execute(f'CREATE DATABASE "{name}"')
        base, _, query = PG_ADMIN.partition("?")
        url = f"{base.rsplit('/', 1)[0]}/{name}" + (f"?{query}" if query else "")
    starting = start_devprov(data / "data", url, free_port(), mqtt_port=free_port())
    running = asyncio.run_coroutine_threadsafe(starting, loop).result(120)
    yield running
    asyncio.run_coroutine_threadsafe(running.devprov.close(), loop).result(60)
    loop.call_soon_threadsafe(loop.stop)
    thread.join(10)
    if request.param == "postgresql":
        with psycopg.connect(PG_ADMIN, autocommit=True) as admin:
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def authorization(running: Running) -> str:
    fields = parse_connection_string(running.connection_string)
    return build_sas(
        fields["HostName"], fields["SharedAccessKey"], key_name=fields["SharedAccessKeyName"]
    )


def test_the_document_is_served(server: Running) -> None:
    answer = requests.get(f"https://localhost:{server.port}/openapi.json", verify=server.ca)
    assert answer.status_code == 200 and answer.json() == openapi_document()


def azure_shaped(ctx: Any, response: Any, case: Any) -> None:
    """Every refusal carries the Azure error body and its x-ms-error-code header."""
    if response.status_code < 400:
        return
    body = ProvisioningServiceErrorDetails.model_validate(response.json())
    header = response.headers.get("x-ms-error-code") or [None]  # schemathesis lists values
    assert header[0] == str(body.error_code), response.headers
    assert body.error_code // 1000 == response.status_code, (body, response.status_code)


schema = schemathesis.openapi.from_dict(openapi_document())


CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_schema_conformance,
    azure_shaped,
]


def call(case: Any, server: Running, http: requests.Session) -> None:
    response = case.call(
        base_url=f"https://localhost:{server.port}",
        session=http,
        headers={"Authorization": authorization(server)},
        verify=server.ca,
        timeout=30,
    )
    case.validate_response(response, checks=CHECKS)


@schema.parametrize()
@settings(
    max_examples=FUZZ_CASES_PER_OPERATION,
    deadline=None,
    suppress_health_check=list(HealthCheck),
    derandomize=True,
)
def test_fuzz_no_5xx_and_every_answer_documented(
    case: Any, server: Running, http: requests.Session
) -> None:
    call(case, server, http)


@pytest.mark.soak
@schema.parametrize()
@settings(
    max_examples=SOAK_CASES_PER_OPERATION,
    deadline=None,
    suppress_health_check=list(HealthCheck),
)
def test_fuzz_no_5xx_and_every_answer_documented_at_length(
    case: Any, server: Running, http: requests.Session
) -> None:
    call(case, server, http)
