"""Provisioning an attested device: allocate, place on the hub, record; each step observed."""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field, replace
from typing import Any

from devprov.attestation.attested import Attested
from devprov.domain import reprovisioning
from devprov.domain.enrollments import device_id_of
from devprov.domain.errors import INTERNAL_ERROR, DpsError
from devprov.domain.models import DeviceRegistrationState
from devprov.protocol.dps import operation_status
from devprov.registration.allocate import AllocationStage
from devprov.registration.issue import Issuance, PendingIssue
from devprov.registration.observe import EventKind, Observers, RegistrationEvent
from devprov.registration.place import Placement
from devprov.registration.ports import Directory, RegistrationRecords
from devprov.registration.record import assigned_state, failed_state

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class OperationResult:
    """An answer to register or operation status: the body, and whether the device must poll."""

    body: dict[str, Any]
    retry_after: int | None = None

    @property
    def pending(self) -> bool:
        return self.retry_after is not None


@dataclass
class _Trace:
    """What one provisioning did, for its outcome event: each stage's seconds, the twin."""

    stages: dict[str, float] = field(default_factory=dict)
    initial_twin: dict[str, Any] | None = None


class Provisioning:
    """The stages after attestation, in order; whatever happens, a record is written."""

    def __init__(
        self,
        directory: Directory,
        allocation: AllocationStage,
        placement: Placement,
        records: RegistrationRecords,
        observers: Observers,
    ) -> None:
        self.directory = directory
        self.allocation = allocation
        self.placement = placement
        self.records = records
        self.observers = observers

    async def provision(
        self,
        attested: Attested,
        operation_id: str,
        payload: Any,
        previous_record: Any,
        pending: PendingIssue | None = None,
    ) -> OperationResult:
        previous = (
            DeviceRegistrationState.model_validate(previous_record) if previous_record else None
        )
        started = time.perf_counter()
        trace = _Trace()
        error: DpsError | None = None
        try:
            state = await self._assign(attested, payload, previous, pending, trace)
        except DpsError as refusal:
            error = refusal
        except Exception:
            log.exception("registration of %s failed", attested.registration_id)
            error = DpsError(500, INTERNAL_ERROR, "Internal error while assigning.")
        if error is not None:
            state = failed_state(attested, previous, error)
        record = state.to_wire()
        saving = time.perf_counter()
        await self.records.save(record, attested.group_id, operation_id)
        if self.observers:
            trace.stages["store"] = time.perf_counter() - saving
            kind: EventKind = "failed" if error else "assigned"
            self.observers(
                RegistrationEvent(
                    kind,
                    attested.registration_id,
                    time.perf_counter() - started,
                    enrollment=attested.group_id,
                    attestation=attested.enrollment.attestation.type,
                    hub=state.assigned_hub,
                    error=error,
                    payload=payload,
                    record=record,
                    initial_twin=trace.initial_twin,
                    stages=trace.stages,
                )
            )
        return OperationResult(operation_status(operation_id, state.status, record))

    async def _assign(
        self,
        attested: Attested,
        payload: Any,
        previous: DeviceRegistrationState | None,
        pending: PendingIssue | None,
        trace: _Trace,
    ) -> DeviceRegistrationState:
        enrollment = attested.enrollment
        linked = await self.directory.linked_hubs()
        started = time.perf_counter()
        try:
            hub, allocation = await self.allocation.allocate(attested, payload, linked, previous)
        finally:
            trace.stages["allocation"] = time.perf_counter() - started
        if self.observers:
            self._observe("allocated", attested, started, hub=hub.host_name)
        plan = reprovisioning.plan(
            previous,
            enrollment.effective_reprovision_policy,
            hub.host_name,
            allocation.initial_twin or enrollment.initial_twin,
        )
        device_id = device_id_of(enrollment, attested.registration_id)
        issued = Issuance.issue(attested, pending) if pending is not None else None
        if issued is not None:
            # The hub identity takes the issued certificate: it is what the device connects with.
            attested = replace(attested, hub_authentication=issued.hub_authentication)
        started = time.perf_counter()
        try:
            trace.initial_twin = await self.placement.place(attested, hub, device_id, plan, linked)
        finally:
            trace.stages["placement"] = time.perf_counter() - started
        if self.observers:
            self._observe("placed", attested, started, hub=hub.host_name)
        state = assigned_state(
            attested, previous, hub.host_name, device_id, plan.substatus, allocation.payload
        )
        if issued is not None:
            state.issued_certificate_chain = issued.chain
        return state

    def _observe(
        self,
        kind: EventKind,
        attested: Attested,
        started: float,
        *,
        hub: str | None = None,
    ) -> None:
        self.observers(
            RegistrationEvent(
                kind,
                attested.registration_id,
                time.perf_counter() - started,
                enrollment=attested.group_id,
                attestation=attested.enrollment.attestation.type,
                hub=hub,
            )
        )
