"""DPS over AMQP: the SASL exchanges, the link addresses, the requests, and their answers.

Everything becomes a call on the one registration service; answers are the same JSON bodies as
HTTPS. Who the device is comes from SASL (PLAIN with a SAS token; DPS's TPM mechanism, which
carries the activation challenge HTTPS answers with 401) or, without SASL, from the TLS client
certificate when the first link is attached. Credentials that prove nothing end SASL with the
`auth` outcome, or close the connection with `amqp:unauthorized-access` for X.509; other
refusals (a disabled enrollment, say) reject the request with the Azure error body, whose
message says what is wrong, as MQTT answers them on the response topic.
"""

from __future__ import annotations

import asyncio
import base64
import logging
import uuid
from collections.abc import Coroutine
from typing import Any

from devprov.attestation.attested import Attested
from devprov.domain.errors import INTERNAL_ERROR, Challenge, DpsError, bad_request
from devprov.protocol import amqp
from devprov.protocol.amqp_frames import Message, accepted, rejected
from devprov.protocol.dps import error_body, parse_register_body
from devprov.protocol.dps_amqp import (
    MECHANISMS,
    DpsAmqpError,
    Identity,
    OperationStatus,
    Register,
    parse_address,
    parse_plain,
    parse_request,
    parse_tpm_init,
    rejection,
    reply,
    tpm_answer,
    tpm_segments,
)
from devprov.registration import DeviceProof, OperationResult, RegistrationService
from devprov.server.amqp_session import Answer, Refusal
from devprov.server.mqtt_session import Peer

log = logging.getLogger(__name__)
# A message is the JSON body (bounded by max_message_bytes) plus its sections and properties.
MESSAGE_OVERHEAD_BYTES = 4096
IDLE_TIMEOUT_MS = 120_000


class DpsAmqp:
    """Serves DPS over AMQP: makes each connection's state machine and its client."""

    def __init__(self, registrations: RegistrationService, max_message_bytes: int) -> None:
        self.registrations = registrations
        self.max_message_bytes = max_message_bytes

    def connection(self, peer: Peer) -> tuple[amqp.ServerConnection, DpsAmqpClient]:
        connection = amqp.ServerConnection(
            mechanisms=MECHANISMS,
            container_id="devprov-dps",
            max_message_size=self.max_message_bytes + MESSAGE_OVERHEAD_BYTES,
            idle_timeout_ms=IDLE_TIMEOUT_MS,
        )
        return connection, DpsAmqpClient(self, peer)


class DpsAmqpClient:
    """One device's DPS connection over AMQP."""

    def __init__(self, application: DpsAmqp, peer: Peer) -> None:
        self.application = application
        self.peer = peer
        self.identity: Identity | None = None
        self.proof = DeviceProof(certificates=peer.certificates)
        self.attested: Attested | None = None
        self.tpm = False
        self._tpm_keys: dict[str, str] = {}
        self._segments: list[bytes] = []
        self._x509 = asyncio.Lock()
        self._identified = False  # by SASL, or by the certificate at the first attach
        self._refusal: Refusal | None = None

    @property
    def name(self) -> str:
        return self.identity.registration_id if self.identity else "an unidentified client"

    @property
    def registrations(self) -> RegistrationService:
        return self.application.registrations

    # SASL ---------------------------------------------------------------------------------

    async def sasl(self, step: amqp.SaslStarted | amqp.SaslAnswered) -> bytes | int:
        try:
            if isinstance(step, amqp.SaslStarted) and step.mechanism == "PLAIN":
                self.identity, token = parse_plain(step.initial_response)
                return await self._authenticate(token)
            if isinstance(step, amqp.SaslStarted):  # TPM, the only other mechanism offered
                self.identity, endorsement_key = parse_tpm_init(step.initial_response)
                self.tpm = True
                self._tpm_keys["endorsementKey"] = base64.b64encode(endorsement_key).decode()
                return b"\x00"  # send the storage root key
            answer = tpm_answer(step.response)
            if not self._tpm_keys.get("storageRootKey"):
                self._tpm_keys["storageRootKey"] = base64.b64encode(answer).decode()
                return await self._tpm_challenge()
            if self._segments:
                return self._segments.pop(0)
            return await self._authenticate(answer.decode("ascii"))
        except (DpsAmqpError, UnicodeDecodeError) as error:
            log.info("AMQP SASL of %s refused: %s", self.name, error)
            return amqp.SASL_AUTH

    async def _tpm_challenge(self) -> bytes | int:
        """The challenge HTTPS answers a TPM's first register with, in SASL segments."""
        assert self.identity is not None
        try:
            await self.registrations.attestation.challenge(
                self.identity.id_scope, self.identity.registration_id, self._tpm_keys, None
            )
        except Challenge as challenge:
            blob = base64.b64decode(challenge.body["authenticationKey"])
            self._segments = tpm_segments(blob)
            return self._segments.pop(0)
        except DpsError as error:
            log.info("AMQP TPM SASL of %s refused: %s", self.name, error.message)
            return amqp.SASL_AUTH
        raise AssertionError("a TPM challenge neither challenged nor refused")

    async def _authenticate(self, token: str) -> int:
        """Check the SAS token (PLAIN's password, or the one the TPM signed)."""
        assert self.identity is not None
        self.proof = DeviceProof(authorization=token, certificates=self.peer.certificates)
        try:
            self.attested = await self.registrations.attest(
                self.identity.id_scope, self.identity.registration_id, self.proof
            )
        except DpsError as error:
            if error.status == 401:
                log.info("AMQP SASL of %s refused: %s", self.name, error.message)
                return amqp.SASL_AUTH
        self._identified = True
        return amqp.SASL_OK

    # Links --------------------------------------------------------------------------------

    def attach(self, link: amqp.Link) -> Coroutine[Any, Any, None] | None:
        """Links on the device's own address are taken; without SASL, once its certificate
        has been checked."""
        try:
            named = parse_address(link.address)
        except DpsAmqpError as error:
            raise Refusal(amqp.NOT_FOUND, str(error)) from None
        if not self._identified:
            return self._attach_with_certificate(named, link)
        self._check(named, link)
        return None

    async def _attach_with_certificate(self, named: Identity, link: amqp.Link) -> None:
        async with self._x509:
            if self.identity is None:  # no SASL: the TLS client certificate speaks for it
                self.identity = named
                self._refusal = await self._attest_certificate()
                self._identified = True
        self._check(named, link)

    def _check(self, named: Identity, link: amqp.Link) -> None:
        if self._refusal is not None:
            raise self._refusal
        assert self.identity is not None
        if not named.same(self.identity):
            raise Refusal(
                amqp.UNAUTHORIZED_ACCESS,
                f"the link address {link.address!r} is not for registration"
                f" {self.identity.registration_id!r}",
            )

    async def _attest_certificate(self) -> Refusal | None:
        """Whether the certificate proves nothing (the links are refused); other refusals
        are the requests' answers."""
        assert self.identity is not None
        try:
            self.attested = await self.registrations.attest(
                self.identity.id_scope, self.identity.registration_id, self.proof
            )
        except DpsError as error:
            if error.status == 401:
                return Refusal(amqp.UNAUTHORIZED_ACCESS, error.message)
        return None

    # Requests -----------------------------------------------------------------------------

    async def message(self, link: amqp.Link, message: Message) -> Answer:
        try:
            result = await self._call(message)
        except DpsError as error:
            return self._refuse(error)
        except DpsAmqpError as error:
            return self._refuse(bad_request(f"{error}."))
        except Exception:
            log.exception("AMQP request of %s failed", self.name)
            internal = DpsError(500, INTERNAL_ERROR, "Internal error; see the server log.")
            return self._refuse(internal)
        return Answer(accepted(), reply(message, result.body, result.retry_after))

    def _refuse(self, error: DpsError) -> Answer:
        retry_after = error.retry_after or self.registrations.settings.retry_after_seconds
        body = error_body(error, str(uuid.uuid4()))
        return Answer(rejected(rejection(error, body, retry_after)))

    async def _call(self, message: Message) -> OperationResult:
        request = parse_request(message)
        identity = self.identity
        if identity is None:
            raise DpsAmqpError("a request before the device was identified")
        registrations = self.registrations
        if isinstance(request, Register):
            body = parse_register_body(request.body, self.application.max_message_bytes)
            # A TPM's register consumes the challenge SASL answered, and carries the hub key.
            attested = self.attested if not self.tpm else None
            attested = attested or await registrations.attest(
                identity.id_scope, identity.registration_id, self.proof, registering=self.tpm
            )
            return await registrations.start(attested, body)
        assert isinstance(request, OperationStatus)
        attested = self.attested or await registrations.attest(
            identity.id_scope, identity.registration_id, self.proof
        )
        return await registrations.poll(attested, request.operation_id)
