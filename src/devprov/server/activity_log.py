"""One log line per registration outcome, per refusal, and per service API call.

Each line names the trackingId the caller was answered with, the ids involved, the outcome and
how long it took. None carries a key, a token, a connection string or a device's payload: the
fields are chosen here, one by one, and nothing is copied in whole from a request.
"""

from __future__ import annotations

import logging
import time

from devprov.log_format import emit
from devprov.registration.observe import RegistrationEvent

REGISTRATIONS = logging.getLogger("devprov.registrations")
SERVICE_CALLS = logging.getLogger("devprov.service")
_OUTCOMES = {"assigned": logging.INFO, "failed": logging.WARNING, "refused": logging.INFO}


def _ms(seconds: float) -> float:
    return int(seconds * 1_000_000) / 1000  # milliseconds to the microsecond


class RegistrationLog:
    """An observer writing one line per outcome (assigned, failed) and per refusal."""

    def __call__(self, event: RegistrationEvent) -> None:
        level = _OUTCOMES.get(event.kind)
        if level is None or not REGISTRATIONS.isEnabledFor(level):
            return
        request = event.request
        fields = {
            "registrationId": event.registration_id,
            "outcome": event.kind,
            "trackingId": request.tracking_id if request else None,
            "transport": request.transport if request else None,
            "enrollmentGroup": event.enrollment,
            "attestation": event.attestation,
            "hub": event.hub,
            "errorCode": event.error.error_code if event.error else None,
            "error": event.error.message if event.error else None,
            "ms": _ms(time.perf_counter() - request.received) if request else _ms(event.seconds),
        }
        for stage, seconds in (event.stages or {}).items():
            fields[stage + "Ms"] = _ms(seconds)
        emit(REGISTRATIONS, level, f"registration {event.kind}", fields)


def service_call(
    method: str,
    path: str,
    status: int,
    seconds: float,
    *,
    tracking_id: str | None,
    policy: str | None,
    error_code: int | None = None,
    via: str = "api",
) -> None:
    """The line for one service call (the API's, or the console's on the caller's behalf)."""
    level = logging.INFO if status < 500 else logging.ERROR
    if not SERVICE_CALLS.isEnabledFor(level):
        return
    fields = {
        "method": method,
        "path": path,
        "status": status,
        "errorCode": error_code,
        "policy": policy,
        "trackingId": tracking_id,
        "via": via,
        "ms": _ms(seconds),
    }
    emit(SERVICE_CALLS, level, "service call", fields)
