"""Symmetric-key attestation: the enrollment a device's SAS token proves it belongs to."""

from __future__ import annotations

from devprov.attestation.attested import Attested, require_enabled
from devprov.attestation.sas import (
    DEFAULT_MAX_LIFETIME_SECONDS,
    check_expiry,
    parse_sas,
    signature_matches,
)
from devprov.domain.errors import unauthorized
from devprov.domain.keys import decode_key, derive_device_key
from devprov.domain.models import EnrollmentFields, EnrollmentGroup, IndividualEnrollment


def expected_resource(id_scope: str, registration_id: str) -> str:
    return f"{id_scope}/registrations/{registration_id}"


def attest_symmetric_key(
    authorization: str | None,
    id_scope: str,
    registration_id: str,
    individual: IndividualEnrollment | None,
    groups: list[EnrollmentGroup],
    max_lifetime: float = DEFAULT_MAX_LIFETIME_SECONDS,
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
        check_expiry(token, max_lifetime=max_lifetime)
        return require_enabled(_attested(registration_id, individual, keys))
    for group in groups:
        group_keys = _enrollment_keys(group)
        if group_keys is None:
            continue
        device_keys = (
            derive_device_key(group_keys[0], registration_id),
            derive_device_key(group_keys[1], registration_id),
        )
        if signature_matches(token, [decode_key(key) for key in device_keys]):
            check_expiry(token, max_lifetime=max_lifetime)
            return require_enabled(_attested(registration_id, group, device_keys))
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


def _attested(
    registration_id: str, enrollment: IndividualEnrollment | EnrollmentGroup, keys: tuple[str, str]
) -> Attested:
    """The device's hub identity uses its own keys (derived ones for a group device)."""
    group = enrollment.enrollment_group_id if isinstance(enrollment, EnrollmentGroup) else None
    return Attested(
        registration_id,
        enrollment,
        hub_authentication={
            "type": "sas",
            "symmetricKey": {"primaryKey": keys[0], "secondaryKey": keys[1]},
        },
        runtime_attestation={"symmetricKey": {}},
        registration_attestation={"symmetricKey": {"enrollmentGroupId": group}} if group else {},
    )
