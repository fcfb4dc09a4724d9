"""The device runtime API on the HTTPS port: register, operation status, status lookup, and
MQTT and AMQP over WebSocket at /$iothub/websocket (told apart by the subprotocol offered).

TPM devices register here only (DPS does no TPM over MQTT): their first register is answered
401 with the activation challenge (a `Challenge`, which the error middleware answers)."""

from __future__ import annotations

import time
from collections.abc import Sequence

from aiohttp import web

from devprov.protocol.dps import RegisterRequest, parse_register_body
from devprov.registration import DeviceProof, OperationResult, RegistrationService
from devprov.registration.observe import Request, handling
from devprov.server import amqp_listener
from devprov.server.amqp_session import DEFAULT_LIMITS as AMQP_LIMITS
from devprov.server.amqp_session import AmqpLimits
from devprov.server.dps_amqp import DpsAmqp
from devprov.server.guard import Outbox
from devprov.server.http import GATE, TRACKING_ID, json_response, read_body, require_api_version
from devprov.server.mqtt_listener import serve_websocket
from devprov.server.mqtt_session import DEFAULT_LIMITS as MQTT_LIMITS
from devprov.server.mqtt_session import MqttApplication, OpenSessions, SessionLimits
from devprov.server.routing import Router
from devprov.server.trust import peer_chain


def proof_of(request: web.Request, body: RegisterRequest | None = None) -> DeviceProof:
    """Everything the device sent to prove itself: token, TLS client chain, TPM keys."""
    ssl_object = request.transport.get_extra_info("ssl_object") if request.transport else None
    return DeviceProof(
        authorization=request.headers.get("Authorization"),
        certificates=tuple(peer_chain(ssl_object)),
        tpm=body.tpm if body else None,
    )


def https_request(request: web.Request) -> Request:
    """The observed request: its trackingId is the one the error middleware gave it."""
    return Request("https", request[TRACKING_ID], time.perf_counter())


def operation_response(result: OperationResult) -> web.Response:
    """200 with the result, or 202 with Retry-After while the device must poll."""
    if result.pending:
        return json_response(result.body, 202, {"Retry-After": str(result.retry_after)})
    return json_response(result.body)


class DeviceApi:
    def __init__(
        self,
        registrations: RegistrationService,
        max_message_bytes: int,
        mqtt_applications: Sequence[MqttApplication],
        max_packet_bytes: int,
        open_sessions: OpenSessions | None,
        amqp: DpsAmqp,
        mqtt_limits: SessionLimits = MQTT_LIMITS,
        amqp_limits: AmqpLimits = AMQP_LIMITS,
    ) -> None:
        self.mqtt_limits = mqtt_limits
        self.amqp_limits = amqp_limits
        self.registrations = registrations
        self.max_message_bytes = max_message_bytes
        self.mqtt_applications = mqtt_applications
        self.max_packet_bytes = max_packet_bytes
        self.open_sessions = open_sessions
        self.amqp = amqp

    def add_routes(self, router: Router) -> None:
        base = "/{idScope}/registrations/{registrationId}"
        router.add("PUT", base + "/register", self.register)
        router.add("GET", base + "/operations/{operationId}", self.operation_status)
        router.add("POST", base, self.status_lookup)
        router.add("GET", "/$iothub/websocket", self.websocket)

    async def websocket(self, request: web.Request, params: dict[str, str]) -> web.StreamResponse:
        outbox = Outbox()
        gate = request.config_dict.get(GATE)
        if gate is not None:
            gate.outboxes.add(outbox)
        if amqp_listener.offers_amqp(request):
            return await amqp_listener.serve_websocket(request, self.amqp, self.amqp_limits, outbox)
        return await serve_websocket(
            request,
            self.mqtt_applications,
            self.max_packet_bytes,
            self.open_sessions,
            self.mqtt_limits,
            outbox,
        )

    async def _registration_body(self, request: web.Request) -> RegisterRequest:
        require_api_version(request)
        raw = await read_body(request, self.max_message_bytes)
        return parse_register_body(raw, self.max_message_bytes)

    async def register(self, request: web.Request, params: dict[str, str]) -> web.Response:
        with handling(https_request(request)):
            body = await self._registration_body(request)
            result = await self.registrations.register(
                params["idScope"], params["registrationId"], proof_of(request, body), body
            )
        return operation_response(result)

    async def operation_status(self, request: web.Request, params: dict[str, str]) -> web.Response:
        require_api_version(request)
        await read_body(request, self.max_message_bytes)  # Node sends `{}`: read and ignore it
        with handling(https_request(request)):
            result = await self.registrations.operation_status(
                params["idScope"],
                params["registrationId"],
                params["operationId"],
                proof_of(request),
            )
        return operation_response(result)

    async def status_lookup(self, request: web.Request, params: dict[str, str]) -> web.Response:
        with handling(https_request(request)):
            body = await self._registration_body(request)
            state = await self.registrations.status_lookup(
                params["idScope"], params["registrationId"], proof_of(request, body), body
            )
        return json_response(state)
