"""The registration service: the one object every transport calls to register and poll.

A registration runs as a task; when it finishes within `fast_path_seconds` the register call is
answered `assigned` at once (the official SDKs accept that), otherwise the device is told
`assigning` and polls the operation, which the finished task writes to the store.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Coroutine
from dataclasses import dataclass
from typing import Any, TypeVar

from devprov.allocation.payload import check_payload
from devprov.attestation.attested import Attested
from devprov.domain.errors import (
    OPERATION_NOT_FOUND,
    REGISTRATION_ID_MISMATCH,
    THROTTLED,
    DpsError,
    bad_request,
    not_found,
)
from devprov.domain.ids import check_name
from devprov.domain.records import Revisions
from devprov.protocol.dps import RegisterRequest, new_operation_id, operation_status
from devprov.registration.attest import Attestation, DeviceProof
from devprov.registration.issue import Issuance
from devprov.registration.observe import Observers, RegistrationEvent
from devprov.registration.ports import Operations, RegistrationRecords
from devprov.registration.provision import OperationResult, Provisioning

T = TypeVar("T")


@dataclass(frozen=True)
class RegistrationSettings:
    id_scope: str
    fast_path_seconds: float = 1.5
    retry_after_seconds: int = 1
    max_in_flight: int = 0
    """Registrations provisioned at once (0: no cap); past it a register is answered 429."""
    max_in_flight_per_device: int = 0
    """The same, for one registration id."""
    throttle_retry_after: int = 3
    """The Retry-After of a register answered 429."""
    deadline_seconds: float = 60.0


class RegistrationService:
    """Register, poll and look up; holds no state but the registrations it is running."""

    def __init__(
        self,
        settings: RegistrationSettings,
        attestation: Attestation,
        provisioning: Provisioning,
        records: RegistrationRecords,
        operations: Operations,
        observers: Observers,
        issuance: Issuance | None = None,
    ) -> None:
        self.settings = settings
        self.issuance = issuance or Issuance(None)
        self.attestation = attestation
        self.provisioning = provisioning
        self.records = records
        self.operations = operations
        self.observers = observers
        self._tasks: set[asyncio.Task[Any]] = set()
        self._provisioning = 0
        self._per_device: dict[str, int] = {}
        self.throttled = 0
        """Registers answered 429 since start."""

    @property
    def in_flight(self) -> int:
        """Registrations attested and not yet finished (provisioning now)."""
        return self._provisioning

    async def register(
        self, id_scope: str, registration_id: str, proof: DeviceProof, request: RegisterRequest
    ) -> OperationResult:
        _check_body_id(request, registration_id)
        self._admit(registration_id)  # shed load before it costs a read or a proof
        if proof.asks_for_tpm_challenge and proof.tpm is not None:
            await self.attestation.challenge(id_scope, registration_id, proof.tpm, None)
        attested = await self.attest(id_scope, registration_id, proof, registering=True)
        return await self.start(attested, request)

    async def start(self, attested: Attested, request: RegisterRequest) -> OperationResult:
        """Register a device whose proof was already checked (MQTT checks it at CONNECT).

        A body its enrollment refuses (payload schema, a CSR it cannot honour) is refused
        here, before anything is recorded."""
        _check_body_id(request, attested.registration_id)
        started = time.perf_counter()
        try:
            self._admit(attested.registration_id)
            check_payload(attested.enrollment, request.payload)
            to_issue = await self.issuance.prepare(attested, request.csr)
        except DpsError as error:
            if self.observers:
                self.observers(
                    RegistrationEvent(
                        "refused",
                        attested.registration_id,
                        time.perf_counter() - started,
                        enrollment=attested.group_id,
                        attestation=attested.enrollment.attestation.type,
                        error=error,
                    )
                )
            raise
        operation_id = new_operation_id()
        self._admit(attested.registration_id)  # again: preparing may have taken a while
        task = self._spawn(
            self.provisioning.provision(attested, operation_id, request.payload, to_issue)
        )
        device = attested.registration_id.lower()
        self._provisioning += 1
        self._per_device[device] = self._per_device.get(device, 0) + 1
        task.add_done_callback(lambda _task: self._provisioned(device))
        done, _ = await asyncio.wait({task}, timeout=self.settings.fast_path_seconds)
        if done:
            return task.result()  # answered at once: no device will poll this operation
        registration_id = attested.registration_id
        pending = operation_status(
            operation_id, "assigning", {"registrationId": registration_id, "status": "assigning"}
        )
        await self.operations.save(operation_id, registration_id, pending)

        def record_result(finished: asyncio.Task[OperationResult]) -> None:
            if finished.cancelled() or finished.exception() is not None:
                return
            final = finished.result().body
            self._spawn(self.operations.save(operation_id, registration_id, final))

        task.add_done_callback(record_result)
        return OperationResult(pending, self.settings.retry_after_seconds)

    async def operation_status(
        self, id_scope: str, registration_id: str, operation_id: str, proof: DeviceProof
    ) -> OperationResult:
        return await self.poll(await self.attest(id_scope, registration_id, proof), operation_id)

    async def poll(self, attested: Attested, operation_id: str) -> OperationResult:
        registration_id = attested.registration_id
        check_name(operation_id, "operation id")
        status = await self.operations.read(operation_id)
        if status is None:  # answered at once: its result is the registration record
            record = await self.records.answered_by(registration_id, operation_id)
            if record is not None:
                return OperationResult(operation_status(operation_id, record["status"], record))
        state = (status or {}).get("registrationState", {})
        if status is None or state.get("registrationId", "").lower() != registration_id.lower():
            raise not_found(
                f"No operation {operation_id!r} for registration {registration_id!r}.",
                OPERATION_NOT_FOUND,
            )
        if status.get("status") == "assigning":
            # The record may be written while the operation is not yet (or never, if that
            # process was killed in between): the record is the answer then.
            record = await self.records.answered_by(registration_id, operation_id)
            if record is not None:
                return OperationResult(operation_status(operation_id, record["status"], record))
            return OperationResult(status, self.settings.retry_after_seconds)
        return OperationResult(status)

    async def status_lookup(
        self, id_scope: str, registration_id: str, proof: DeviceProof, request: RegisterRequest
    ) -> dict[str, Any]:
        """The DeviceRegistrationResult a device may ask for without registering again."""
        _check_body_id(request, registration_id)
        if proof.asks_for_tpm_challenge and proof.tpm is not None:
            await self.attestation.challenge(id_scope, registration_id, proof.tpm, None)
        await self.attest(id_scope, registration_id, proof)
        record = await self.records.read(registration_id)
        return record or {"registrationId": registration_id, "status": "unassigned"}

    async def attest(
        self,
        id_scope: str,
        registration_id: str,
        proof: DeviceProof,
        *,
        registering: bool = False,
        revisions: Revisions | None = None,
    ) -> Attested:
        """Check who the device is (see Attestation.attest), telling the observers."""
        started = time.perf_counter()
        try:
            attested = await self.attestation.attest(
                id_scope, registration_id, proof, registering=registering, revisions=revisions
            )
        except DpsError as error:
            if self.observers:
                seconds = time.perf_counter() - started
                self.observers(RegistrationEvent("refused", registration_id, seconds, error=error))
            raise
        if self.observers:
            self.observers(
                RegistrationEvent(
                    "attested",
                    registration_id,
                    time.perf_counter() - started,
                    enrollment=attested.group_id,
                    attestation=attested.enrollment.attestation.type,
                )
            )
        return attested

    async def drain(self, seconds: float) -> bool:
        """Wait, at most `seconds`, for the registrations this service is running and for the
        saving of their results (False when some were still running)."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + seconds
        while self._tasks:
            remaining = deadline - loop.time()
            if remaining <= 0:
                return False
            await asyncio.wait(set(self._tasks), timeout=remaining)
        return True

    def _admit(self, registration_id: str) -> None:
        """Refuse a registration past the caps with 429 and Retry-After, as DPS sheds load."""
        settings = self.settings
        if settings.max_in_flight and self._provisioning >= settings.max_in_flight:
            reason = f"{self._provisioning} registrations are in progress"
        elif settings.max_in_flight_per_device and (
            self._per_device.get(registration_id.lower(), 0) >= settings.max_in_flight_per_device
        ):
            reason = f"registration {registration_id!r} is already in progress"
        else:
            return
        self.throttled += 1
        raise DpsError(
            429,
            THROTTLED,
            f"Too many requests: {reason}; retry after {settings.throttle_retry_after} s.",
            retry_after=settings.throttle_retry_after,
        )

    def _provisioned(self, device: str) -> None:
        self._provisioning -= 1
        left = self._per_device.get(device, 1) - 1
        if left > 0:
            self._per_device[device] = left
        else:
            self._per_device.pop(device, None)

    def _spawn(self, work: Coroutine[Any, Any, T]) -> asyncio.Task[T]:
        """A task kept until it ends (and cancelled by `close`)."""
        task = asyncio.create_task(work)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    async def close(self) -> None:
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)


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
