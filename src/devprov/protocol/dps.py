"""DPS device message shapes: the register request body, operation results, the error body."""

from __future__ import annotations

import secrets
import uuid
from dataclasses import dataclass
from typing import Any

from devprov.domain.clock import now_timestamp
from devprov.domain.errors import MESSAGE_TOO_LARGE, DpsError, bad_request, invalid_json
from devprov.domain.json_text import JsonRefused, parse_json

DEFAULT_MAX_MESSAGE_BYTES = 96 * 1024


@dataclass(frozen=True)
class RegisterRequest:
    """A DeviceRegistration body. `payload` is None when the device sent none (or null);
    `csr` (2025-07-01-preview) is the device's certificate signing request, base64 DER."""

    registration_id: str | None
    payload: Any
    tpm: dict[str, Any] | None
    csr: str | None = None


def parse_register_body(raw: bytes, max_bytes: int = DEFAULT_MAX_MESSAGE_BYTES) -> RegisterRequest:
    """Decode a register (or status lookup) body; an empty body counts as `{}`.

    The whole message is bounded (96 KB, as DPS), which bounds the payload the device may send.
    """
    check_size(len(raw), max_bytes)
    if not raw.strip():
        return RegisterRequest(None, None, None)
    try:
        body = parse_json(raw)
    except JsonRefused as exc:
        raise invalid_json(f"The request body is not valid JSON: {exc}.") from None
    if not isinstance(body, dict):
        raise bad_request("The request body must be a JSON object (a DeviceRegistration).")
    registration_id = body.get("registrationId")
    if registration_id is not None and not isinstance(registration_id, str):
        raise bad_request("registrationId must be a string.")
    tpm = body.get("tpm")
    if tpm is not None and not isinstance(tpm, dict):
        raise bad_request("tpm must be an object with endorsementKey and storageRootKey.")
    csr = body.get("csr")
    if csr is not None and not isinstance(csr, str):
        raise bad_request("csr must be a string: a base64 DER PKCS#10 request.")
    return RegisterRequest(registration_id, body.get("payload"), tpm, csr)


def check_size(size: int, max_bytes: int) -> None:
    if size > max_bytes:
        raise DpsError(
            413,
            MESSAGE_TOO_LARGE,
            f"The message is {size} bytes; at most {max_bytes} bytes are accepted"
            " (payload included).",
        )


def new_operation_id() -> str:
    """Shaped like DPS's (`5.316aac5bdc130deb.b1e02da8-...`), from the characters [A-Za-z0-9.-]."""
    return f"5.{secrets.token_hex(8)}.{uuid.uuid4()}"


def operation_status(
    operation_id: str, status: str, registration_state: dict[str, Any] | None = None
) -> dict[str, Any]:
    """A RegistrationOperationStatus: what register and operation-status calls answer."""
    body: dict[str, Any] = {"operationId": operation_id, "status": status}
    if registration_state is not None:
        body["registrationState"] = registration_state
    return body


def error_body(error: DpsError, tracking_id: str) -> dict[str, Any]:
    """ProvisioningServiceErrorDetails, the Azure error shape."""
    body: dict[str, Any] = {
        "errorCode": error.error_code,
        "trackingId": tracking_id,
        "message": error.message,
        "timestampUtc": now_timestamp(),
    }
    if error.info:
        body["info"] = error.info
    return body
