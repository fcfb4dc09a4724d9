"""The record stage: the registration record an assignment or a failure leaves behind."""

from __future__ import annotations

from typing import Any

from devprov.attestation.attested import Attested
from devprov.domain.clock import new_etag, now_timestamp
from devprov.domain.errors import DpsError
from devprov.domain.models import DeviceRegistrationState, Substatus


def assigned_state(
    attested: Attested,
    previous: DeviceRegistrationState | None,
    hub: str,
    device_id: str,
    substatus: Substatus,
    payload: Any,
) -> DeviceRegistrationState:
    """The record of a device now on `hub`, with the payload allocation gave it."""
    now = now_timestamp()
    return DeviceRegistrationState(
        registration_id=attested.registration_id,
        created_date_time_utc=previous.created_date_time_utc if previous else now,
        assigned_hub=hub,
        device_id=device_id,
        status="assigned",
        substatus=substatus,
        last_updated_date_time_utc=now,
        etag=new_etag(),
        payload=payload,
        **attested.registration_attestation,
    )


def failed_state(
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
