"""The Azure error shape: every refusal carries an HTTP status and a six-digit errorCode.

The codes Azure documents are reused with their meaning (400004, 400207, 400208, 400209, 401000,
404201, 404204, 409201, 412, 429001). Where DPS documents nothing, devprov picks a code inside the
same HTTP family and lists it in docs/errors.md.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

# Request-shape errors.
INVALID_JSON = 400001
VALIDATION = 400004
REGISTRATION_ID_MISMATCH = 400005
CA_PROOF_FAILED = 400010
MISSING_API_VERSION = 400006
PAYLOAD_SCHEMA_MISMATCH = 400011
CSR_INVALID = 400012
CSR_NAME_MISMATCH = 400013
CSR_WEAK_KEY = 400014
CSR_NOT_ALLOWED = 400015
CSR_POLICY_UNKNOWN = 400016
# Allocation failures reported on a registration (status "failed").
CUSTOM_ALLOCATION_FAILED = 400207
NO_HUB = 400208
HUB_NOT_LINKED = 400209
WEBHOOK_TIMEOUT = 400210
WEBHOOK_UNREACHABLE = 400211
WEBHOOK_BAD_RESPONSE = 400212
HUB_CONNECTOR_FAILED = 400213
# Authentication and authorization.
UNAUTHORIZED = 401000
TOKEN_EXPIRED = 401001
TOKEN_TOO_LONG = 401004
INVALID_CERTIFICATE = 401002
TPM_NOT_ENROLLED = 401003
ENROLLMENT_DISABLED = 403001
PERMISSION_DENIED = 403002
# Lookups.
ENROLLMENT_NOT_FOUND = 404201
REGISTRATION_NOT_FOUND = 404202
OPERATION_NOT_FOUND = 404203
GROUP_NOT_FOUND = 404204
LINKED_HUB_NOT_FOUND = 404205
CA_NOT_FOUND = 404206
CREDENTIAL_POLICY_NOT_FOUND = 404207
EXCHANGE_NOT_FOUND = 404208
ROUTE_NOT_FOUND = 404000
METHOD_NOT_ALLOWED = 405000
ALREADY_EXISTS = 409201
# A registration refused because its deviceId is another registration's on that hub.
DEVICE_ID_TAKEN = 409202
ETAG_MISMATCH = 412001
REQUEST_TIMEOUT = 408001
MESSAGE_TOO_LARGE = 413001
UNSUPPORTED_MEDIA_TYPE = 415001
THROTTLED = 429001
INTERNAL_ERROR = 500000
# A registration that did not finish: devprov stopped under it, or it ran past its deadline.
REGISTRATION_INTERRUPTED = 500101
REGISTRATION_DEADLINE = 500102


@dataclass
class DpsError(Exception):
    """A refusal: HTTP status, numeric errorCode and a message that says what was wrong."""

    status: int
    error_code: int
    message: str
    info: dict[str, Any] | None = field(default=None)
    retry_after: int | None = field(default=None)
    """Seconds the client should wait before trying again (429: throttled)."""

    def __str__(self) -> str:
        return f"{self.error_code}: {self.message}"


class Challenge(Exception):
    """Not a refusal: the device must answer a challenge first (DPS's TPM flow). Carries the
    HTTP status and the body DPS answers with."""

    def __init__(self, status: int, body: dict[str, Any]) -> None:
        super().__init__(body.get("message", "challenge"))
        self.status = status
        self.body = body


def bad_request(message: str, error_code: int = VALIDATION) -> DpsError:
    return DpsError(400, error_code, message)


def invalid_json(message: str = "The request body is not valid JSON.") -> DpsError:
    return DpsError(400, INVALID_JSON, message)


def unauthorized(message: str = "Unauthorized", error_code: int = UNAUTHORIZED) -> DpsError:
    return DpsError(401, error_code, message)


def not_found(message: str, error_code: int = ENROLLMENT_NOT_FOUND) -> DpsError:
    return DpsError(404, error_code, message)


def conflict(message: str, error_code: int = ALREADY_EXISTS) -> DpsError:
    return DpsError(409, error_code, message)


def precondition_failed(
    message: str = "ETag in the request does not match the existing resource per RFC7232.",
) -> DpsError:
    return DpsError(412, ETAG_MISMATCH, message)
