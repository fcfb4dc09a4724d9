"""The service API as an OpenAPI 3.1 document, served at /openapi.json.

Request and answer schemas are generated from the pydantic models the API validates bodies
with (domain/models.py), so the document cannot drift from what is accepted. The operations
are listed here, beside the rights they need; a test checks they are exactly the routes
`ServiceApi` serves.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from aiohttp import web
from pydantic import BaseModel
from pydantic.json_schema import models_json_schema

from devprov.domain.models import (
    AttestationMechanism,
    BulkEnrollmentOperation,
    DeviceRegistrationState,
    EnrollmentGroup,
    IndividualEnrollment,
    LinkedHub,
    ProvisioningServiceErrorDetails,
)
from devprov.server.http import json_response
from devprov.server.routing import Router

API_VERSION = "2021-10-01"
REF = "#/components/schemas/{model}"
_MODELS: list[type[BaseModel]] = [
    IndividualEnrollment,
    EnrollmentGroup,
    DeviceRegistrationState,
    LinkedHub,
    BulkEnrollmentOperation,
    AttestationMechanism,
    ProvisioningServiceErrorDetails,
]


def ref(model: str) -> dict[str, Any]:
    return {"$ref": REF.format(model=model)}


_CERTIFICATE_BODY = {
    "type": "object",
    "required": ["certificate"],
    "properties": {"certificate": {"type": "string", "description": "PEM or base64 DER"}},
}
_CA = {
    "type": "object",
    "properties": {
        "name": {"type": "string"},
        "etag": {"type": "string"},
        "properties": {"type": "object"},
    },
}
_AUDIT_ENTRY = {
    "type": "object",
    "properties": {
        "id": {"type": "integer"},
        "at": {"type": "string", "format": "date-time"},
        "who": {"type": "string", "description": "The policy's key name, or cli:USER"},
        "method": {"type": "string"},
        "path": {"type": "string"},
        "resource": {"type": ["string", "null"]},
        "status": {"type": "integer"},
        "peer": {"type": ["string", "null"], "description": "The client's address"},
    },
}
_BULK_RESULT = {
    "type": "object",
    "properties": {
        "isSuccessful": {"type": "boolean"},
        "errors": {"type": "array", "items": {"type": "object"}},
    },
}


@dataclass(frozen=True)
class Operation:
    method: str
    path: str
    summary: str
    right: str | None
    body: dict[str, Any] | None = None
    answer: dict[str, Any] | None = None
    status: int = 200
    headers: tuple[str, ...] = ()
    query: tuple[str, ...] = ()


def _enrollment_operations(base: str, model: str, noun: str) -> list[Operation]:
    one = f"{base}/{{id}}"
    page = ("x-ms-max-item-count", "x-ms-continuation")
    return [
        Operation("PUT", one, f"Create or replace an {noun}", "EnrollmentWrite", ref(model),
                  ref(model), headers=("If-Match",)),
        Operation("GET", one, f"Read an {noun} (no keys)", "EnrollmentRead", None, ref(model)),
        Operation("DELETE", one, f"Delete an {noun}", "EnrollmentWrite", status=204,
                  headers=("If-Match",)),
        Operation("POST", f"{one}/attestationmechanism", f"The {noun}'s attestation, keys"
                  " included", "EnrollmentRead", None, ref("AttestationMechanism")),
        Operation("POST", f"{base}/query", f"List {noun}s, a page at a time", "EnrollmentRead",
                  {"type": "object"}, {"type": "array", "items": ref(model)}, headers=page),
        Operation("POST", base, f"Create, update or delete up to ten {noun}s",
                  "EnrollmentWrite", ref("BulkEnrollmentOperation"), _BULK_RESULT),
    ]  # fmt: skip


OPERATIONS: list[Operation] = [
    *_enrollment_operations("/enrollments", "IndividualEnrollment", "individual enrollment"),
    *_enrollment_operations("/enrollmentGroups", "EnrollmentGroup", "enrollment group"),
    Operation("GET", "/registrations/{id}", "A device's registration record",
              "RegistrationStatusRead", None, ref("DeviceRegistrationState")),
    Operation("DELETE", "/registrations/{id}", "Forget a device's registration record",
              "RegistrationStatusWrite", status=204, headers=("If-Match",)),
    Operation("POST", "/registrations/{id}/query", "The registration records of a group",
              "RegistrationStatusRead", {"type": "object"},
              {"type": "array", "items": ref("DeviceRegistrationState")},
              headers=("x-ms-max-item-count", "x-ms-continuation")),
    Operation("GET", "/linkedHubs", "The linked IoT hubs (devprov's own route)", "ServiceConfig",
              None, {"type": "array", "items": ref("LinkedHub")}),
    Operation("PUT", "/linkedHubs/{hub}", "Link or relink an IoT hub (the path names it)",
              "ServiceConfig", ref("LinkedHub"), ref("LinkedHub")),
    Operation("GET", "/linkedHubs/{hub}", "A linked hub (its connection string is write-only)",
              "ServiceConfig", None, ref("LinkedHub")),
    Operation("DELETE", "/linkedHubs/{hub}", "Unlink a hub", "ServiceConfig", status=204),
    Operation("GET", "/linkedHubs/{hub}/devices", "Devices the built-in registry connector"
              " made on a hub", "ServiceConfig", None, {"type": "array",
              "items": {"type": "object"}}),
    Operation("GET", "/linkedHubs/{hub}/devices/{device}", "One device on a hub",
              "ServiceConfig", None, {"type": "object"}),
    Operation("GET", "/certificates", "Verified CAs", "ServiceConfig", None,
              {"type": "object", "properties": {"value": {"type": "array", "items": _CA}}}),
    Operation("PUT", "/certificates/{name}", "Add or replace a CA", "ServiceConfig",
              _CERTIFICATE_BODY, _CA),
    Operation("GET", "/certificates/{name}", "A CA", "ServiceConfig", None, _CA),
    Operation("DELETE", "/certificates/{name}", "Remove a CA", "ServiceConfig", status=204),
    Operation("POST", "/certificates/{name}/generateVerificationCode", "A proof-of-possession"
              " code for a CA", "ServiceConfig", None, _CA),
    Operation("POST", "/certificates/{name}/verify", "Prove possession of a CA's key",
              "ServiceConfig", _CERTIFICATE_BODY, _CA),
    Operation("GET", "/audit", "The audit trail of writes, newest first (devprov's own route)",
              "ServiceConfig", None, {"type": "array", "items": _AUDIT_ENTRY},
              query=("since", "limit")),
]  # fmt: skip

_HEADER_SCHEMAS = {
    "If-Match": {"type": "string", "description": "The etag the record must still have"},
    "x-ms-max-item-count": {"type": "integer", "minimum": 1, "maximum": 1000},
    "x-ms-continuation": {"type": "string", "description": "From the previous page's answer"},
}


_QUERY_SCHEMAS = {
    "since": {"type": "string", "description": "Epoch seconds or an ISO 8601 time"},
    "limit": {"type": "integer", "minimum": 1, "maximum": 1000, "default": 100},
}


def _parameters(operation: Operation) -> list[dict[str, Any]]:
    parameters: list[dict[str, Any]] = [
        {"name": name[1:-1], "in": "path", "required": True, "schema": {"type": "string"}}
        for name in operation.path.split("/")
        if name.startswith("{")
    ]
    parameters.append(
        {
            "name": "api-version",
            "in": "query",
            "required": True,
            "schema": {"type": "string", "default": API_VERSION, "minLength": 1},
        }
    )
    parameters += [
        {"name": name, "in": "header", "required": False, "schema": _HEADER_SCHEMAS[name]}
        for name in operation.headers
    ]
    parameters += [
        {"name": name, "in": "query", "required": False, "schema": _QUERY_SCHEMAS[name]}
        for name in operation.query
    ]
    return parameters


def _json(schema: dict[str, Any]) -> dict[str, Any]:
    return {"application/json": {"schema": schema}}


def _operation(operation: Operation) -> dict[str, Any]:
    answer: dict[str, Any] = {"description": "OK"}
    if operation.answer is not None:
        answer["content"] = _json(operation.answer)
    error = {"description": "Refused, in the Azure error shape", "content": _json(ref("Error"))}
    document: dict[str, Any] = {
        "summary": operation.summary,
        "operationId": f"{operation.method.lower()}{operation.path}".replace("/", "_")
        .replace("{", "")
        .replace("}", ""),
        "parameters": _parameters(operation),
        "responses": {str(operation.status): answer, "default": error},
        "security": [{"sas": []}],
    }
    if operation.right:
        document["description"] = f"Needs a policy with the {operation.right} right."
    if operation.body is not None:
        document["requestBody"] = {"required": True, "content": _json(operation.body)}
    return document


def _health() -> dict[str, Any]:
    status = {
        "type": "object",
        "properties": {"status": {"type": "string"}, "checks": {"type": "object"}},
    }
    return {
        "/healthz": {"get": {"summary": "Alive", "operationId": "healthz", "security": [],
                             "responses": {"200": {"description": "Alive",
                                                   "content": _json(status)}}}},
        "/readyz": {"get": {"summary": "Ready: the store answers, its schema is current",
                            "operationId": "readyz", "security": [],
                            "responses": {"200": {"description": "Ready",
                                                  "content": _json(status)},
                                          "503": {"description": "Not ready",
                                                  "content": _json(status)}}}},
    }  # fmt: skip


def openapi_document(server_url: str | None = None) -> dict[str, Any]:
    """The OpenAPI 3.1 document of the service API (and the health routes)."""
    _, schemas = models_json_schema([(model, "validation") for model in _MODELS], ref_template=REF)
    components = schemas.get("$defs", {})
    components["Error"] = components.pop("ProvisioningServiceErrorDetails")
    paths: dict[str, dict[str, Any]] = {}
    for operation in OPERATIONS:
        paths.setdefault(operation.path, {})[operation.method.lower()] = _operation(operation)
    paths.update(_health())
    document: dict[str, Any] = {
        "openapi": "3.1.0",
        "info": {
            "title": "devprov service API",
            "version": API_VERSION,
            "description": "Azure IoT Hub DPS's service API (api-version 2021-10-01) as"
            " devprov serves it, with devprov's linked hubs and CAs.",
        },
        "paths": paths,
        "components": {
            "schemas": _rename(components),
            "securitySchemes": {
                "sas": {
                    "type": "apiKey",
                    "in": "header",
                    "name": "Authorization",
                    "description": "SharedAccessSignature sr=HOST&sig=...&se=...&skn=POLICY,"
                    " signed with a shared access policy's key",
                }
            },
        },
    }
    if server_url:
        document["servers"] = [{"url": server_url}]
    return document


def _rename(schemas: dict[str, Any]) -> dict[str, Any]:
    """`$ref`s to the error model point at its component name, `Error`."""
    text_ref = REF.format(model="ProvisioningServiceErrorDetails")

    def walk(value: Any) -> Any:
        if isinstance(value, dict):
            return {
                key: (ref("Error")["$ref"] if key == "$ref" and item == text_ref else walk(item))
                for key, item in value.items()
            }
        if isinstance(value, list):
            return [walk(item) for item in value]
        return value

    return {name: walk(schema) for name, schema in schemas.items()}


def add_openapi_route(router: Router) -> None:
    document = openapi_document()

    async def serve(request: web.Request, params: dict[str, str]) -> web.StreamResponse:
        return json_response(document)

    router.add("GET", "/openapi.json", serve)
