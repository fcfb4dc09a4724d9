"""The registration service: attest, allocate, create the hub identity, remember the result.

Every transport (HTTPS, MQTT, MQTT over WebSocket) calls this one service and only translates
wire messages. A registration runs as a task; when it finishes within `fast_path_seconds` the
register call is answered `assigned` at once (the official SDKs accept that), otherwise the
device is told `assigning` and polls the operation, which the finished task writes to the store.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Coroutine, Mapping
from dataclasses import dataclass
from typing import Any, TypeVar

from cryptography import x509

from devprov.allocation import policies
from devprov.allocation.custom import WebhookAnswer, WebhookClient, allocation_request
from devprov.allocation.policies import AllocationError
from devprov.attestation import tpm_device
from devprov.attestation.attested import Attested
from devprov.attestation.device_auth import attest_symmetric_key
from devprov.attestation.x509 import attest_x509
from devprov.directory import Directory
from devprov.domain.clock import new_etag, now_timestamp
from devprov.domain.enrollments import public_view
from devprov.domain.errors import (
    HUB_CONNECTOR_FAILED,
    INTERNAL_ERROR,
    OPERATION_NOT_FOUND,
    REGISTRATION_ID_MISMATCH,
    DpsError,
    bad_request,
    not_found,
    unauthorized,
)
from devprov.domain.ids import id_key, validate_id
from devprov.domain.models import (
    DeviceRegistrationState,
    EnrollmentGroup,
    IndividualEnrollment,
    LinkedHub,
)
from devprov.hubs.connector import DeviceIdentity, HubConnector
from devprov.protocol.dps import RegisterRequest, new_operation_id, operation_status
from devprov.store.database import Kind, Put, Store, StoredDocument

log = logging.getLogger(__name__)
T = TypeVar("T")


@dataclass(frozen=True)
class RegistrationSettings:
    id_scope: str
    fast_path_seconds: float = 1.5
    retry_after_seconds: int = 1


@dataclass(frozen=True)
class _Known:
    """The registration record as read just before, so allocation need not read it again."""

    record: StoredDocument | None


@dataclass(frozen=True)
class DeviceProof:
    """What a device sent to prove who it is: a SAS token, TPM keys, a client certificate
    chain (leaf first), or several of these."""

    authorization: str | None = None
    certificates: tuple[x509.Certificate, ...] = ()
    tpm: dict[str, Any] | None = None


@dataclass(frozen=True)
class OperationResult:
    """An answer to register or operation status: the body, and whether the device must poll."""

    body: dict[str, Any]
    retry_after: int | None = None

    @property
    def pending(self) -> bool:
        return self.retry_after is not None


@dataclass(frozen=True)
class Allocation:
    hub: str
    initial_twin: dict[str, Any] | None
    payload: Any


class RegistrationService:
    """Puts the steps of a registration in order; holds no state but running tasks."""

    def __init__(
        self,
        settings: RegistrationSettings,
        store: Store,
        webhooks: WebhookClient,
        connectors: Mapping[str, HubConnector],
        directory: Directory | None = None,
    ) -> None:
        self.settings = settings
        self.store = store
        self.directory = directory or Directory(store)
        self.webhooks = webhooks
        self.connectors = connectors
        self._tasks: set[asyncio.Task[Any]] = set()

    async def register(
        self, id_scope: str, registration_id: str, proof: DeviceProof, request: RegisterRequest
    ) -> OperationResult:
        _check_body_id(request, registration_id)
        # One round trip answers both what the caches need and what allocation will.
        revisions, previous = await self.store.revisions_and(
            Kind.REGISTRATION, id_key(registration_id)
        )
        attested = await self.attest(
            id_scope, registration_id, proof, registering=True, revisions=revisions
        )
        return await self.start(attested, request, _Known(previous))

    async def start(
        self, attested: Attested, request: RegisterRequest, previous: _Known | None = None
    ) -> OperationResult:
        """Register a device whose proof was already checked (MQTT checks it at CONNECT)."""
        _check_body_id(request, attested.registration_id)
        operation_id = new_operation_id()
        task = self._spawn(self._provision(attested, operation_id, request.payload, previous))
        done, _ = await asyncio.wait({task}, timeout=self.settings.fast_path_seconds)
        if done:
            return task.result()  # answered at once: no device will poll this operation
        pending = operation_status(
            operation_id,
            "assigning",
            {"registrationId": attested.registration_id, "status": "assigning"},
        )
        columns = _operation_columns(attested)
        await self.store.write([Put(Kind.OPERATION, operation_id, new_etag(), pending, columns)])

        def record_result(finished: asyncio.Task[OperationResult]) -> None:
            if finished.cancelled() or finished.exception() is not None:
                return
            final = Put(Kind.OPERATION, operation_id, new_etag(), finished.result().body, columns)
            self._spawn(self.store.write([final]))

        task.add_done_callback(record_result)
        return OperationResult(pending, self.settings.retry_after_seconds)

    def _spawn(self, work: Coroutine[Any, Any, T]) -> asyncio.Task[T]:
        """A task kept until it ends (and cancelled by `close`)."""
        task = asyncio.create_task(work)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    async def operation_status(
        self, id_scope: str, registration_id: str, operation_id: str, proof: DeviceProof
    ) -> OperationResult:
        return await self.poll(await self.attest(id_scope, registration_id, proof), operation_id)

    async def poll(self, attested: Attested, operation_id: str) -> OperationResult:
        registration_id = attested.registration_id
        stored = await self.store.get(Kind.OPERATION, operation_id)
        if stored is None:  # answered at once: its result is the registration record
            answered = await self.store.page(
                Kind.REGISTRATION,
                where={"key": id_key(registration_id), "operation_id": operation_id},
            )
            if answered:
                record = answered[0].document
                return OperationResult(operation_status(operation_id, record["status"], record))
        if (
            stored is None
            or stored.document.get("registrationState", {}).get("registrationId", "").lower()
            != registration_id.lower()
        ):
            raise not_found(
                f"No operation {operation_id!r} for registration {registration_id!r}.",
                OPERATION_NOT_FOUND,
            )
        if stored.document.get("status") == "assigning":
            return OperationResult(stored.document, self.settings.retry_after_seconds)
        return OperationResult(stored.document)

    async def status_lookup(
        self,
        id_scope: str,
        registration_id: str,
        proof: DeviceProof,
        request: RegisterRequest,
    ) -> dict[str, Any]:
        """The DeviceRegistrationResult a device may ask for without registering again."""
        _check_body_id(request, registration_id)
        await self.attest(id_scope, registration_id, proof)
        stored = await self.store.get(Kind.REGISTRATION, id_key(registration_id))
        if stored is None:
            return {"registrationId": registration_id, "status": "unassigned"}
        return stored.document

    async def attest(
        self,
        id_scope: str,
        registration_id: str,
        proof: DeviceProof,
        *,
        registering: bool = False,
        revisions: tuple[int, ...] | None = None,
    ) -> Attested:
        """Check who the device is: its id scope, its id, and the proof it sent.

        A TPM's first register (EK and SRK, no token) raises `TpmChallenge`. A token signed by
        a TPM-enrolled device is checked against the key of its challenge; any other token
        is a symmetric-key SAS; no token but a client certificate is X.509."""
        validate_id(registration_id)
        if id_scope.lower() != self.settings.id_scope.lower():
            raise unauthorized(f"The id scope {id_scope!r} is not served here.")
        key = id_key(registration_id)
        await self.directory.refresh(revisions)
        individual = await self.directory.individual(key)
        if proof.tpm is not None and proof.authorization is None:
            record, challenge = tpm_device.challenge(
                registration_id, individual, tpm_device.TpmKeys.from_body(proof.tpm)
            )
            await self.store.write([Put(Kind.TPM_CHALLENGE, key, new_etag(), record)])
            raise challenge
        if proof.authorization is not None:
            if individual is not None and individual.attestation.type == "tpm":
                return await self._attest_tpm_token(
                    registration_id, individual, proof.authorization, registering
                )
            groups = [] if individual else await self.directory.groups("symmetricKey")
            return attest_symmetric_key(
                proof.authorization, self.settings.id_scope, registration_id, individual, groups
            )
        if proof.certificates:
            groups = [] if individual else await self.directory.groups("x509")
            cas = await self.directory.known_cas()
            return attest_x509(registration_id, proof.certificates, individual, groups, cas)
        raise unauthorized(
            "No credentials: send a SharedAccessSignature, a TPM's keys, or a client certificate."
        )

    async def _attest_tpm_token(
        self, registration_id: str, individual: IndividualEnrollment, token: str, registering: bool
    ) -> Attested:
        key = id_key(registration_id)
        stored = await self.store.get(Kind.TPM_CHALLENGE, key)
        attested = tpm_device.attest_tpm_token(
            registration_id,
            individual,
            token,
            stored.document if stored else None,
            registering=registering,
        )
        if registering and stored is not None:
            used = {**stored.document, "used": True}
            await self.store.replace(Put(Kind.TPM_CHALLENGE, key, new_etag(), used), stored.etag)
        return attested

    async def close(self) -> None:
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        await self.webhooks.close()

    async def _provision(
        self, attested: Attested, operation_id: str, payload: Any, known: _Known | None
    ) -> OperationResult:
        registration_key = id_key(attested.registration_id)
        previous_row = (
            known.record if known else await self.store.get(Kind.REGISTRATION, registration_key)
        )
        previous = (
            DeviceRegistrationState.model_validate(previous_row.document) if previous_row else None
        )
        try:
            state = await self._assign(attested, payload, previous)
        except DpsError as error:
            state = _failed_state(attested, previous, error)
        except Exception:
            log.exception("registration of %s failed", attested.registration_id)
            state = _failed_state(
                attested, previous, DpsError(500, INTERNAL_ERROR, "Internal error while assigning.")
            )
        record = state.to_wire()
        group_key = id_key(attested.group_id) if attested.group_id else None
        columns = {"group_key": group_key, "operation_id": operation_id}
        await self.store.write(
            [Put(Kind.REGISTRATION, registration_key, state.etag or "", record, columns)]
        )
        return OperationResult(operation_status(operation_id, state.status, record))

    async def _assign(
        self, attested: Attested, payload: Any, previous: DeviceRegistrationState | None
    ) -> DeviceRegistrationState:
        enrollment = attested.enrollment
        linked = await self.directory.linked_hubs()
        current_hub = previous.assigned_hub if previous else None
        reprovision = enrollment.effective_reprovision_policy
        sticky = current_hub is not None and not reprovision.update_hub_assignment
        candidates = (
            [hub for hub in linked if hub.host_name.lower() == current_hub.lower()]
            if sticky and current_hub
            else []
        ) or policies.candidate_hubs(enrollment, linked)
        allocation = await self._allocate(attested, payload, candidates, previous)
        hub = next(h for h in candidates if h.host_name.lower() == allocation.hub.lower())
        device_id = _device_id(enrollment, attested.registration_id)
        moved = current_hub is not None and current_hub.lower() != hub.host_name.lower()
        substatus, twin = _reprovision_outcome(
            first=current_hub is None,
            moved=moved,
            sticky=sticky,
            migrate=reprovision.migrate_device_data,
            twin=allocation.initial_twin or enrollment.initial_twin,
        )
        old_device = previous.device_id if moved and previous is not None else None
        if old_device and current_hub and substatus == "deviceDataMigrated":
            twin = await self._old_twin(linked, current_hub, old_device)
        await self._put_on_hub(attested, hub, device_id, twin)
        if old_device and current_hub:
            await self._remove_from_hub(linked, current_hub, old_device)
        now = now_timestamp()
        return DeviceRegistrationState(
            registration_id=attested.registration_id,
            created_date_time_utc=previous.created_date_time_utc if previous else now,
            assigned_hub=hub.host_name,
            device_id=device_id,
            status="assigned",
            substatus=substatus,
            last_updated_date_time_utc=now,
            etag=new_etag(),
            payload=allocation.payload,
            **attested.registration_attestation,
        )

    async def _allocate(
        self,
        attested: Attested,
        payload: Any,
        candidates: list[LinkedHub],
        previous: DeviceRegistrationState | None,
    ) -> Allocation:
        enrollment = attested.enrollment
        policy = enrollment.allocation_policy or "hashed"
        if policy == "custom" and enrollment.custom_allocation_definition is not None:
            answer = await self._ask_webhook(attested, payload, candidates, previous)
            return Allocation(answer.iot_hub_host_name, answer.initial_twin, answer.payload)
        if policy == "static":
            chosen = policies.static(candidates)
        elif policy == "geoLatency":
            chosen = policies.geo_latency(attested.registration_id, candidates)
        else:
            chosen = policies.hashed(attested.registration_id, candidates)
        return Allocation(chosen.host_name, None, None)

    async def _ask_webhook(
        self,
        attested: Attested,
        payload: Any,
        candidates: list[LinkedHub],
        previous: DeviceRegistrationState | None,
    ) -> WebhookAnswer:
        enrollment = attested.enrollment
        definition = enrollment.custom_allocation_definition
        assert definition is not None
        context: dict[str, Any] = {"registrationId": attested.registration_id}
        if previous is not None and previous.assigned_hub:
            context["currentIotHubHostName"] = previous.assigned_hub
            context["currentDeviceId"] = previous.device_id
        context.update(attested.runtime_attestation)
        if payload is not None:
            context["payload"] = payload
        kind = "enrollmentGroup" if attested.group_id else "individualEnrollment"
        view = public_view(enrollment)
        view.pop("registrationState", None)
        body = allocation_request(kind, view, context, [hub.host_name for hub in candidates])
        return await self.webhooks.allocate(definition.webhook_url, body)

    async def _put_on_hub(
        self, attested: Attested, hub: LinkedHub, device_id: str, twin: dict[str, Any] | None
    ) -> None:
        connector = self.connectors.get(hub.connector)
        if connector is None:
            raise AllocationError(
                400,
                HUB_CONNECTOR_FAILED,
                f"IoT hub {hub.host_name!r} has no connector {hub.connector!r}.",
            )
        capabilities = attested.enrollment.capabilities
        identity = DeviceIdentity(
            hub_host_name=hub.host_name,
            device_id=device_id,
            registration_id=attested.registration_id,
            authentication=attested.hub_authentication,
            capabilities=capabilities.to_wire() if capabilities else {"iotEdge": False},
            initial_twin=twin,
        )
        try:
            await connector.upsert_device(identity)
        except Exception as exc:
            log.exception("hub connector %s failed for %s", hub.connector, device_id)
            raise AllocationError(
                400,
                HUB_CONNECTOR_FAILED,
                f"Creating device {device_id!r} on IoT hub {hub.host_name!r} failed: {exc}",
            ) from None

    def _connector_of(self, linked: list[LinkedHub], hub_name: str) -> HubConnector | None:
        hub = next((hub for hub in linked if hub.host_name.lower() == hub_name.lower()), None)
        return self.connectors.get(hub.connector) if hub else None

    async def _old_twin(
        self, linked: list[LinkedHub], hub_name: str, device_id: str
    ) -> dict[str, Any] | None:
        """The twin a migrating device leaves behind (empty when it cannot be read)."""
        connector = self._connector_of(linked, hub_name)
        try:
            twin = await connector.read_twin(hub_name, device_id) if connector else None
        except Exception:
            log.exception("could not read the twin of %s on %s to migrate it", device_id, hub_name)
            twin = None
        return twin or {}

    async def _remove_from_hub(
        self, linked: list[LinkedHub], hub_name: str, device_id: str
    ) -> None:
        connector = self._connector_of(linked, hub_name)
        if connector is None:
            return
        try:
            await connector.remove_device(hub_name, device_id)
        except Exception:
            log.exception("could not remove %s from %s after it moved", device_id, hub_name)


def _check_body_id(request: RegisterRequest, registration_id: str) -> None:
    """The registration id in the body, when there is one, must be the one in the path."""
    if request.registration_id is not None and (
        request.registration_id.lower() != registration_id.lower()
    ):
        raise bad_request(
            f"The body's registrationId {request.registration_id!r} differs from"
            f" {registration_id!r}.",
            REGISTRATION_ID_MISMATCH,
        )


def _device_id(enrollment: IndividualEnrollment | EnrollmentGroup, registration_id: str) -> str:
    if isinstance(enrollment, IndividualEnrollment) and enrollment.device_id:
        return enrollment.device_id
    return registration_id


def _reprovision_outcome(
    *, first: bool, moved: bool, sticky: bool, migrate: bool, twin: dict[str, Any] | None
) -> tuple[str, dict[str, Any] | None]:
    """The substatus DPS reports and the twin to apply, per the reprovisioning policy.

    The initial twin is applied on the first assignment and when a device moves under
    "reprovision and reset"; a move under "migrate" carries the twin from the old hub (read by
    the caller), and a re-registration on the same hub leaves the twin alone.
    """
    if first:
        return "initialAssignment", twin or {}
    if sticky:
        return "initialAssignment", None
    if moved:
        return ("deviceDataMigrated", None) if migrate else ("deviceDataReset", twin or {})
    return "reprovisionedToInitialAssignment", None


def _failed_state(
    attested: Attested, previous: DeviceRegistrationState | None, error: DpsError
) -> DeviceRegistrationState:
    """A failed attempt is recorded whole: status, errorCode and message. Where the device was
    assigned before stays on the record, since its identity is still on that hub."""
    now = now_timestamp()
    return DeviceRegistrationState(
        registration_id=attested.registration_id,
        created_date_time_utc=previous.created_date_time_utc if previous else now,
        assigned_hub=previous.assigned_hub if previous else None,
        device_id=previous.device_id if previous else None,
        status="failed",
        error_code=error.error_code,
        error_message=error.message,
        last_updated_date_time_utc=now,
        etag=new_etag(),
        **attested.registration_attestation,
    )


def _operation_columns(attested: Attested) -> dict[str, str | None]:
    return {"registration_key": id_key(attested.registration_id)}
