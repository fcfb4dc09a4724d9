"""Finding the enrollment a device's SAS token proves it belongs to (symmetric-key attestation)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from devprov.attestation.sas import check_expiry, parse_sas, signature_matches
from devprov.attestation.symmetric_key import decode_key, derive_device_key
from devprov.domain.errors import ENROLLMENT_DISABLED, DpsError, unauthorized
from devprov.domain.models import EnrollmentFields, EnrollmentGroup, IndividualEnrollment


@dataclass(frozen=True)
class Attested:
    """A device whose proof checked out: its enrollment and the keys it will hold on the hub."""

    registration_id: str
    enrollment: IndividualEnrollment | EnrollmentGroup
    device_keys: tuple[str, str]

    @property
    def group_id(self) -> str | None:
        if isinstance(self.enrollment, EnrollmentGroup):
            return self.enrollment.enrollment_group_id
        return None

    def runtime_attestation(self) -> dict[str, Any]:
        """The attestation part of the webhook's deviceRuntimeContext."""
        return {"symmetricKey": {}}


def expected_resource(id_scope: str, registration_id: str) -> str:
    return f"{id_scope}/registrations/{registration_id}"


def attest_symmetric_key(
    authorization: str | None,
    id_scope: str,
    registration_id: str,
    individual: IndividualEnrollment | None,
    groups: list[EnrollmentGroup],
) -> Attested:
    """Check the token against the device's individual enrollment, or else each symmetric-key group.

    An individual enrollment, when there is one, decides alone: a device cannot fall back to a
    group its individual enrollment does not allow. The signature is checked before the expiry so
    that a stale but genuine token is told apart from a forged one.
    """
    token = parse_sas(authorization)
    if token.resource.lower() != expected_resource(id_scope, registration_id).lower():
        raise unauthorized(
            f"The SharedAccessSignature is for {token.resource!r}, not for"
            f" {expected_resource(id_scope, registration_id)!r}."
        )
    if individual is not None:
        keys = _enrollment_keys(individual)
        if keys is None:
            raise unauthorized(
                f"The enrollment for {registration_id!r} uses {individual.attestation.type}"
                " attestation, not a symmetric key."
            )
        if not signature_matches(token, [decode_key(key) for key in keys]):
            raise unauthorized(
                f"The SharedAccessSignature for {registration_id!r} is not signed with the"
                " enrollment's key."
            )
        check_expiry(token)
        return _enabled(Attested(registration_id, individual, keys))
    for group in groups:
        group_keys = _enrollment_keys(group)
        if group_keys is None:
            continue
        device_keys = (
            derive_device_key(group_keys[0], registration_id),
            derive_device_key(group_keys[1], registration_id),
        )
        if signature_matches(token, [decode_key(key) for key in device_keys]):
            check_expiry(token)
            return _enabled(Attested(registration_id, group, device_keys))
    raise unauthorized(
        f"No enrollment matches registration id {registration_id!r} and the key that signed"
        " the token."
    )


def _enrollment_keys(enrollment: EnrollmentFields) -> tuple[str, str] | None:
    keys = enrollment.attestation.symmetric_key
    if enrollment.attestation.type != "symmetricKey" or keys is None:
        return None
    if not keys.primary_key or not keys.secondary_key:
        return None
    return keys.primary_key, keys.secondary_key


def _enabled(attested: Attested) -> Attested:
    if not attested.enrollment.enabled:
        kind = "enrollment group" if attested.group_id else "enrollment"
        name = attested.group_id or attested.registration_id
        raise DpsError(403, ENROLLMENT_DISABLED, f"The {kind} {name!r} is disabled.")
    return attested
