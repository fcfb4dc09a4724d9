"""Provisioning an attested device: allocate, place on the hub, record; each step observed.

A registration holds its registration id's claim (claim.py) from before it reads the previous
record until the record is written, so registrations of one id, in any process, run one after
the other: the device ends up on exactly the hub its record names. It runs within a deadline;
past it the registration fails (500102) rather than outlive its claim.
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass, field, replace
from typing import Any

from devprov.attestation.attested import Attested
from devprov.domain import reprovisioning
from devprov.domain.claims import Claim
from devprov.domain.enrollments import device_id_of
from devprov.domain.errors import (
    DEVICE_ID_TAKEN,
    INTERNAL_ERROR,
    REGISTRATION_DEADLINE,
    DpsError,
)
from devprov.domain.ids import id_key
from devprov.domain.models import DeviceRegistrationState, LinkedHub
from devprov.domain.reprovisioning import Place
from devprov.protocol.dps import operation_status
from devprov.registration.allocate import AllocationStage
from devprov.registration.claim import Claiming
from devprov.registration.issue import Issuance, PendingIssue
from devprov.registration.observe import EventKind, Observers, RegistrationEvent
from devprov.registration.place import Placement
from devprov.registration.ports import Directory, RegistrationRecords
from devprov.registration.record import assigned_state, failed_state
from devprov.registration.settle import Settling

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
    placing: bool = False  # a hub was asked to change: a failure now may leave a stray identity
    settled: bool = True  # False: a stray identity may be left (the claim's sweep removes it)
    leave: Place | None = None  # the hub the device moved away from, left once recorded
    linked: list[LinkedHub] = field(default_factory=list)


class Provisioning:
    """The stages after attestation, in order; whatever happens, a record is written."""

    def __init__(
        self,
        directory: Directory,
        allocation: AllocationStage,
        placement: Placement,
        records: RegistrationRecords,
        observers: Observers,
        claiming: Claiming,
        settling: Settling,
        deadline_seconds: float,
    ) -> None:
        self.directory = directory
        self.allocation = allocation
        self.placement = placement
        self.records = records
        self.observers = observers
        self.claiming = claiming
        self.settling = settling
        self.deadline_seconds = deadline_seconds

    async def provision(
        self,
        attested: Attested,
        operation_id: str,
        payload: Any,
        pending: PendingIssue | None = None,
    ) -> OperationResult:
        started = time.perf_counter()
        trace = _Trace()
        error: DpsError | None = None
        previous: DeviceRegistrationState | None = None
        claim: Claim | None = None
        registration_id = attested.registration_id
        device_id = device_id_of(attested.enrollment, registration_id)
        async with self.claiming.queue(registration_id):
            try:
                async with asyncio.timeout(self.deadline_seconds):
                    claim = await self.claiming.take(registration_id, device_id, operation_id)
                    # Taken over from a registration cut short: settled once its strays are
                    # cleared below; failing before that, the sweep clears them.
                    trace.settled = not claim.stale_devices
                    # As read under the claim: a registration of this id may have just
                    # finished, in this process or another.
                    previous = _state(claim.record)
                    state = await self._assign(attested, payload, previous, pending, trace, claim)
            except DpsError as refusal:
                error = refusal
                trace.settled &= not trace.placing  # a hub that failed may have done it anyway
            except TimeoutError:
                error = DpsError(
                    500,
                    REGISTRATION_DEADLINE,
                    f"The registration did not finish within {self.deadline_seconds:g} s.",
                )
                trace.settled &= not trace.placing
            except Exception:
                log.exception("registration of %s failed", registration_id)
                error = DpsError(500, INTERNAL_ERROR, "Internal error while assigning.")
                trace.settled &= not trace.placing
            if error is not None:
                if claim is None:  # the answer says where the device was (it is not recorded)
                    previous = await self._previous(registration_id)
                state = failed_state(attested, previous, error)
            return await self._record(
                attested, operation_id, payload, state, error, trace, claim, started
            )

    async def _record(
        self,
        attested: Attested,
        operation_id: str,
        payload: Any,
        state: DeviceRegistrationState,
        error: DpsError | None,
        trace: _Trace,
        claim: Claim | None,
        started: float,
    ) -> OperationResult:
        record = state.to_wire()
        saving = time.perf_counter()
        if claim is not None:  # without it, the record may be another registration's now
            leaving = trace.leave is not None and error is None
            try:
                await self.records.save(
                    record, attested.group_id, operation_id, claim, trace.settled, leaving
                )
                if trace.leave is not None and leaving:
                    # Only now that the record names the new hub: killed before this, the
                    # device is on both (the claim's sweep then removes the old one).
                    left = await self.placement.leave(trace.linked, trace.leave)
                    await self.claiming.claims.release(claim, trace.settled and left)
            except BaseException:  # its sweep cleans up whatever this registration left
                await asyncio.shield(self.claiming.claims.release(claim, settled=False))
                raise
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
        claim: Claim,
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
        _check_device_id_free(attested.registration_id, hub.host_name, device_id, claim)
        issued = Issuance.issue(attested, pending) if pending is not None else None
        if issued is not None:
            # The hub identity takes the issued certificate: it is what the device connects with.
            attested = replace(attested, hub_authentication=issued.hub_authentication)
        started = time.perf_counter()
        trace.placing = True
        try:
            trace.initial_twin = await self.placement.place(
                attested, hub, device_id, plan, linked, leaving=False
            )
            trace.leave, trace.linked = plan.leave, linked
            if claim.stale_devices:  # a registration before this one was cut short
                cleared = [
                    await self.settling.clear(stray, keep=hub.host_name)
                    for stray in claim.stale_devices
                ]
                trace.settled = all(cleared)
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

    async def _previous(self, registration_id: str) -> DeviceRegistrationState | None:
        try:
            return _state(await self.records.read(registration_id))
        except Exception:  # the store failing is the error being answered already
            return None

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


def _check_device_id_free(registration_id: str, hub: str, device_id: str, claim: Claim) -> None:
    """A device id on a hub is one registration's: another registration whose record puts
    its device there is refused (409202), never handed that device's identity."""
    others = [holder for holder in claim.holders_on(hub) if holder != id_key(registration_id)]
    if others:
        raise DpsError(
            409,
            DEVICE_ID_TAKEN,
            f"Device {device_id!r} on IoT hub {hub!r} belongs to registration {others[0]!r}:"
            " give this enrollment another deviceId, or delete that registration record"
            " (and its device) first.",
        )


def _state(record: Any) -> DeviceRegistrationState | None:
    return DeviceRegistrationState.model_validate(record) if record else None
