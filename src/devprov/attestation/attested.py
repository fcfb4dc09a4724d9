"""What a successful attestation yields, whatever the device proved itself with."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from devprov.domain.errors import ENROLLMENT_DISABLED, DpsError
from devprov.domain.models import EnrollmentGroup, IndividualEnrollment


@dataclass(frozen=True)
class Attested:
    """A device whose proof checked out, and what that proof means downstream.

    `hub_authentication` is the credential its hub identity gets (IoT Hub's device shape),
    `runtime_attestation` the attestation part of the webhook's deviceRuntimeContext, and
    `registration_attestation` the attestation part of its DeviceRegistrationState.
    """

    registration_id: str
    enrollment: IndividualEnrollment | EnrollmentGroup
    hub_authentication: dict[str, Any]
    runtime_attestation: dict[str, Any] = field(default_factory=dict)
    registration_attestation: dict[str, Any] = field(default_factory=dict)

    @property
    def group_id(self) -> str | None:
        if isinstance(self.enrollment, EnrollmentGroup):
            return self.enrollment.enrollment_group_id
        return None


def require_enabled(attested: Attested) -> Attested:
    """A disabled enrollment refuses its device; an individual one decides alone."""
    if not attested.enrollment.enabled:
        kind = "enrollment group" if attested.group_id else "enrollment"
        name = attested.group_id or attested.registration_id
        raise DpsError(403, ENROLLMENT_DISABLED, f"The {kind} {name!r} is disabled.")
    return attested
