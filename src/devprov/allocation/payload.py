"""Device payloads checked and routed: JSON Schema (2020-12) validators, compiled once, and the
substitution that lets a route's answer carry parts of the payload (`{payload.modelId}`)."""

from __future__ import annotations

import hashlib
import json
import re
from collections import OrderedDict
from collections.abc import Sequence
from typing import Any

from jsonschema import Draft202012Validator
from jsonschema.exceptions import SchemaError, ValidationError, best_match

from devprov.domain.errors import PAYLOAD_SCHEMA_MISMATCH, DpsError, bad_request
from devprov.domain.models import EnrollmentFields, PayloadRoute

Schema = dict[str, Any] | bool
MAX_COMPILED = 4096
_PLACEHOLDER = re.compile(r"\{(registrationId|payload(?:\.[^{}.\s]+)*)\}")


class _Compiled:
    """Validators by schema. An enrollment read from the directory cache is the same object
    for every registration until it changes, so a schema is found by identity first (the entry
    holds the schema, so its id cannot be reused while cached); a new object with the same
    content finds the same validator through the hash of its canonical JSON."""

    def __init__(self, size: int = MAX_COMPILED) -> None:
        self.size = size
        self._by_identity: OrderedDict[int, tuple[Schema, Draft202012Validator]] = OrderedDict()
        self._by_content: OrderedDict[str, Draft202012Validator] = OrderedDict()

    def validator(self, schema: Schema) -> Draft202012Validator:
        entry = self._by_identity.get(id(schema))
        if entry is not None and entry[0] is schema:
            return entry[1]
        digest = hashlib.sha256(json.dumps(schema, sort_keys=True).encode()).hexdigest()
        compiled = self._by_content.get(digest)
        if compiled is None:
            compiled = Draft202012Validator(schema)
            self._by_content[digest] = compiled
            if len(self._by_content) > self.size:
                self._by_content.popitem(last=False)
        self._by_identity[id(schema)] = (schema, compiled)
        if len(self._by_identity) > self.size:
            self._by_identity.popitem(last=False)
        return compiled


_compiled = _Compiled()


def check_schema(schema: Any, where: str) -> None:
    """Refuse (400004) a schema that is not a valid JSON Schema 2020-12, when it is written."""
    if not isinstance(schema, dict | bool):
        raise bad_request(f"{where} must be a JSON Schema: an object or a boolean.")
    try:
        Draft202012Validator.check_schema(schema)
    except SchemaError as error:
        raise bad_request(f"{where} is not a valid JSON Schema 2020-12: {error.message}") from None


def check_payload_rules(enrollment: EnrollmentFields) -> None:
    """The payload schema and every route's match must be valid schemas."""
    if enrollment.payload_schema is not None:
        check_schema(enrollment.payload_schema, "payloadSchema")
    for number, route in enumerate(enrollment.payload_routes or []):
        check_schema(route.match, f"payloadRoutes[{number}].match")


def describe(error: ValidationError) -> str:
    """Where in the payload, and which rule of the schema failed."""
    path = error.json_path.replace("$", "payload", 1)
    return f"at {path}: {error.message} (rule {error.validator!r})"


def check_payload(enrollment: EnrollmentFields, payload: Any) -> None:
    """Refuse a payload its enrollment's payloadSchema does not accept (400011); a device that
    sent no payload is checked as null."""
    schema = enrollment.payload_schema
    if schema is None:
        return
    validator = _compiled.validator(schema)
    if validator.is_valid(payload):
        return
    error = best_match(validator.iter_errors(payload))
    raise DpsError(
        400,
        PAYLOAD_SCHEMA_MISMATCH,
        "The payload does not match the enrollment's payloadSchema " + describe(error) + ".",
    )


def matching_route(routes: Sequence[PayloadRoute], payload: Any) -> PayloadRoute | None:
    """The first route whose schema the payload matches."""
    for route in routes:
        if _compiled.validator(route.match).is_valid(payload):
            return route
    return None


def _lookup(path: str, registration_id: str, payload: Any) -> tuple[bool, Any]:
    if path == "registrationId":
        return True, registration_id
    value = payload
    for part in path.split(".")[1:]:
        if isinstance(value, dict) and part in value:
            value = value[part]
        elif isinstance(value, list) and part.isdigit() and int(part) < len(value):
            value = value[int(part)]
        else:
            return False, None
    return True, value


def substitute(template: Any, registration_id: str, payload: Any) -> Any:
    """A route's answer with `{payload.a.b}`, `{payload.list.0}` and `{registrationId}` filled.

    A string that is one placeholder becomes the value itself (object, number...); one inside
    a longer string is written as text (JSON for what is not a string). A path the payload
    does not have becomes null alone, or nothing inside a string. Other braces stay as they are.
    """
    if isinstance(template, str):
        whole = _PLACEHOLDER.fullmatch(template)
        if whole is not None:
            return _lookup(whole.group(1), registration_id, payload)[1]
        if "{" not in template:
            return template

        def text(match: re.Match[str]) -> str:
            found, value = _lookup(match.group(1), registration_id, payload)
            if not found or value is None:
                return ""
            return value if isinstance(value, str) else json.dumps(value)

        return _PLACEHOLDER.sub(text, template)
    if isinstance(template, dict):
        return {key: substitute(value, registration_id, payload) for key, value in template.items()}
    if isinstance(template, list):
        return [substitute(value, registration_id, payload) for value in template]
    return template


def route_answer(
    route: PayloadRoute, registration_id: str, payload: Any
) -> tuple[str | None, dict[str, Any] | None, Any]:
    """The route's hub (None: the enrollment's policy picks it), twin and payload, filled."""
    hub = substitute(route.iot_hub_host_name, registration_id, payload)
    twin = substitute(route.initial_twin, registration_id, payload)
    answer = substitute(route.payload, registration_id, payload)
    return (str(hub) if hub else None), (twin if isinstance(twin, dict) else None), answer
