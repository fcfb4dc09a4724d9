"""DPS over AMQP: link addresses, the SASL exchanges of the SDKs, request and reply messages.

- Links: a receiver (replies) and a sender (requests) on `{idScope}/registrations/{id}`; the C
  SDK writes `amqps://{host}/{idScope}/registrations/{id}`, so the path's tail is what counts.
- SASL: PLAIN carries `\\0{idScope}/registrations/{id}\\0{SAS token}`. DPS's own `TPM`
  mechanism carries `\\0{idScope}\\0{id}\\0{EK}`; the server asks for the SRK with a one-byte
  challenge `\\0`, sends the activation blob in segments (a control byte `0x80|seq`, `0xC0|seq`
  on the last), and the device answers the last with `\\0{SAS token}` signed by the TPM.
  X.509 devices skip SASL: their TLS certificate is the credential.
- Requests: application property `iotdps-operation-type` is `iotdps-register` (the body is the
  same JSON as HTTPS) or `iotdps-get-operationstatus` with `iotdps-operation-id`.
- Replies: a data section of ASCII JSON, the request's correlation id (or message id) as the
  correlation id, and `retry-after` while the device must poll. A request DPS refuses is
  rejected with an AMQP error whose description is the Azure error body.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any

from devprov.domain.errors import DpsError
from devprov.protocol import amqp
from devprov.protocol.amqp_frames import AmqpError, Message
from devprov.protocol.amqp_types import Symbol

MECHANISMS = ("TPM", "PLAIN")  # rhea takes the first one it can do
OPERATION_TYPE = "iotdps-operation-type"
OPERATION_ID = "iotdps-operation-id"
REGISTER = "iotdps-register"
GET_OPERATION_STATUS = "iotdps-get-operationstatus"
# The C and .NET SDKs check the segment number (two bits): at most four segments, each kept
# well inside the 512 bytes a SASL frame may take before max-frame-size is agreed.
TPM_SEGMENT_BYTES = 400
TPM_MAX_SEGMENTS = 4
THROTTLED = "com.microsoft:device-container-throttled"
ARGUMENT_ERROR = "com.microsoft:argument-error"

_ADDRESS = re.compile(r"^(?:amqps?://[^/]*/)?(?P<scope>[^/]+)/registrations/(?P<id>[^/]+)$")


class DpsAmqpError(ValueError):
    """Something the device sent that DPS over AMQP does not accept; says what."""


@dataclass(frozen=True)
class Identity:
    id_scope: str
    registration_id: str

    def same(self, other: Identity) -> bool:
        return (
            self.id_scope.lower() == other.id_scope.lower()
            and self.registration_id.lower() == other.registration_id.lower()
        )


def parse_address(address: str | None) -> Identity:
    """The identity a link address names: `[amqps://host/]{idScope}/registrations/{id}`."""
    match = _ADDRESS.match(address or "")
    if match is None:
        raise DpsAmqpError(
            f"the link address {address!r} is not {{idScope}}/registrations/{{registrationId}}"
        )
    return Identity(match["scope"], match["id"])


def parse_plain(initial_response: bytes) -> tuple[Identity, str]:
    """PLAIN (RFC 4616) `[authzid]\\0authcid\\0passwd`: the authcid names the device."""
    parts = initial_response.split(b"\x00")
    if len(parts) != 3:
        raise DpsAmqpError("the PLAIN response is not [authzid]\\0authcid\\0password")
    try:
        user, password = parts[1].decode(), parts[2].decode()
    except UnicodeDecodeError:
        raise DpsAmqpError("the PLAIN user name or password is not UTF-8") from None
    return parse_address(user), password


def parse_tpm_init(initial_response: bytes) -> tuple[Identity, bytes]:
    """The TPM mechanism's first message: `\\0{idScope}\\0{registrationId}\\0{EK}`."""
    parts = initial_response.split(b"\x00", 3)
    if len(parts) != 4 or parts[0] or not parts[1] or not parts[2] or not parts[3]:
        raise DpsAmqpError("the TPM SASL init is not \\0idScope\\0registrationId\\0EK")
    try:
        identity = Identity(parts[1].decode(), parts[2].decode())
    except UnicodeDecodeError:
        raise DpsAmqpError("the TPM SASL id scope or registration id is not UTF-8") from None
    return identity, parts[3]


def tpm_answer(response: bytes) -> bytes:
    """What a device put after the control byte `\\0` of its TPM SASL response."""
    if not response or response[0] != 0:
        raise DpsAmqpError("a TPM SASL response must start with the byte 0")
    return response[1:]


def tpm_segments(blob: bytes) -> list[bytes]:
    """The activation blob as challenges: a control byte (more/last, sequence), then bytes."""
    size = max(TPM_SEGMENT_BYTES, -(-len(blob) // TPM_MAX_SEGMENTS))
    pieces = [blob[i : i + size] for i in range(0, len(blob), size)] or [b""]
    return [
        bytes([(0xC0 if n == len(pieces) - 1 else 0x80) | (n & 0x03)]) + piece
        for n, piece in enumerate(pieces)
    ]


@dataclass(frozen=True)
class Register:
    body: bytes


@dataclass(frozen=True)
class OperationStatus:
    operation_id: str


def parse_request(message: Message) -> Register | OperationStatus:
    """What a device asks for. The body is a data section (Node, C), or an amqp-value."""
    kind = message.application_properties.get(OPERATION_TYPE)
    if kind == REGISTER:
        if message.data is not None:
            return Register(message.data)
        if isinstance(message.value, (str, bytes)):
            value = message.value
            return Register(value.encode() if isinstance(value, str) else value)
        return Register(b"")
    if kind == GET_OPERATION_STATUS:
        operation_id = message.application_properties.get(OPERATION_ID)
        if not isinstance(operation_id, str) or not operation_id:
            raise DpsAmqpError(f"an operation status request needs {OPERATION_ID}")
        return OperationStatus(operation_id)
    raise DpsAmqpError(
        f"{OPERATION_TYPE} {kind!r} is neither {REGISTER} nor {GET_OPERATION_STATUS}"
    )


def reply(request: Message, body: dict[str, Any], retry_after: int | None) -> Message:
    """The answer to a request: its JSON (ASCII, as the other transports), matched by id."""
    properties: dict[str, Any] = {}
    if retry_after is not None:
        # Node and C read `retry-after`, .NET `Retry-After`.
        properties = {"retry-after": str(retry_after), "Retry-After": str(retry_after)}
    correlation = request.correlation_id
    return Message(
        correlation_id=correlation if correlation is not None else request.message_id,
        application_properties=properties,
        data=json.dumps(body, separators=(",", ":")).encode("ascii"),
    )


def condition_for(status: int) -> str:
    """The AMQP error condition that says what an HTTP status says."""
    if status in (401, 403):
        return amqp.UNAUTHORIZED_ACCESS
    if status == 404:
        return amqp.NOT_FOUND
    if status == 429:
        return THROTTLED
    if status >= 500:
        return amqp.INTERNAL_ERROR
    return ARGUMENT_ERROR


def rejection(error: DpsError, body: dict[str, Any], retry_after: int) -> AmqpError:
    """A refused request: the Azure error body as the description. The SDKs try again after
    `retry-after` seconds on throttling and internal errors, and report the rest."""
    info: dict[Any, Any] | None = None
    if error.status == 429 or error.status >= 500:
        info = {Symbol("retry-after"): retry_after, Symbol("Retry-After"): retry_after}
    return AmqpError(condition_for(error.status), json.dumps(body, separators=(",", ":")), info)
