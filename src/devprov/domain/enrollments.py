"""Rules for writing enrollments and groups: validation, keys, timestamps, etags, views."""

from __future__ import annotations

from typing import Any, TypeVar
from urllib.parse import urlparse

from devprov.domain.certificates import certificate_info, load_certificate
from devprov.domain.clock import new_etag, now_timestamp
from devprov.domain.errors import REGISTRATION_ID_MISMATCH, bad_request
from devprov.domain.ids import id_key, validate_id
from devprov.domain.keys import generate_key, validate_key
from devprov.domain.models import (
    EnrollmentFields,
    EnrollmentGroup,
    IndividualEnrollment,
    SymmetricKeyAttestation,
)

EnrollmentT = TypeVar("EnrollmentT", IndividualEnrollment, EnrollmentGroup)


def enrollment_id(enrollment: EnrollmentFields) -> str:
    if isinstance(enrollment, IndividualEnrollment):
        return enrollment.registration_id
    assert isinstance(enrollment, EnrollmentGroup)
    return enrollment.enrollment_group_id


def prepare_for_write(
    incoming: EnrollmentT, existing: EnrollmentT | None, path_id: str | None = None
) -> EnrollmentT:
    """Check an enrollment a client wants to store and fill what the service owns.

    Keys left null are generated on create and kept on update: the official clients update by
    sending back what GET returned, and GET never carries keys.
    """
    what = (
        "registration id" if isinstance(incoming, IndividualEnrollment) else "enrollment group id"
    )
    own_id = validate_id(enrollment_id(incoming), what)
    if path_id is not None and id_key(path_id) != id_key(own_id):
        raise bad_request(
            f"The {what} in the body ({own_id!r}) differs from the one in the path ({path_id!r}).",
            REGISTRATION_ID_MISMATCH,
        )
    result = incoming.model_copy(deep=True)
    if isinstance(result, IndividualEnrollment):
        result.registration_state = None
        if result.device_id is not None:
            validate_id(result.device_id, "device id")
    _check_attestation(result, existing)
    _check_allocation(result, existing)
    stamp = now_timestamp()
    result.created_date_time_utc = existing.created_date_time_utc if existing else stamp
    result.last_updated_date_time_utc = stamp
    result.etag = new_etag()
    return result


def _check_attestation(enrollment: EnrollmentFields, existing: EnrollmentFields | None) -> None:
    attestation = enrollment.attestation
    if attestation.type == "symmetricKey":
        keys = attestation.symmetric_key or SymmetricKeyAttestation()
        old = existing.attestation.symmetric_key if existing else None
        keys.primary_key = _key(keys.primary_key, old.primary_key if old else None, "primary key")
        keys.secondary_key = _key(
            keys.secondary_key, old.secondary_key if old else None, "secondary key"
        )
        attestation.symmetric_key = keys
    elif attestation.type == "tpm":
        if isinstance(enrollment, EnrollmentGroup):
            raise bad_request("Enrollment groups do not support TPM attestation.")
        if attestation.tpm is None:
            raise bad_request("A TPM attestation needs attestation.tpm.endorsementKey.")
    elif attestation.type == "x509":
        _check_x509(enrollment)
    else:
        raise bad_request("The attestation type 'none' cannot be used to provision devices.")


def _check_x509(enrollment: EnrollmentFields) -> None:
    """Individual enrollments hold the device's certificate; groups a signing certificate or a
    reference to a CA. Each certificate gets DPS's computed `info` beside it."""
    x509_attestation = enrollment.attestation.x509
    individual = isinstance(enrollment, IndividualEnrollment)
    present = x509_attestation and (
        x509_attestation.client_certificates
        if individual
        else (x509_attestation.signing_certificates or x509_attestation.ca_references)
    )
    if not x509_attestation or not present:
        wanted = "clientCertificates" if individual else "signingCertificates or caReferences"
        raise bad_request(f"An X.509 attestation needs attestation.x509.{wanted}.")
    for certificates in (
        x509_attestation.client_certificates,
        x509_attestation.signing_certificates,
    ):
        for slot, entry in (certificates or {}).items():
            if entry is None:
                continue
            if not isinstance(entry, dict) or not isinstance(entry.get("certificate"), str):
                raise bad_request(f"The X.509 {slot} entry needs a certificate (PEM or base64).")
            entry["info"] = certificate_info(load_certificate(entry["certificate"]))


def _key(supplied: str | None, previous: str | None, which: str) -> str:
    if supplied:
        return validate_key(supplied, which)
    return previous or generate_key()


IN_PROCESS_SCHEME = "allocator"


def _check_allocation(enrollment: EnrollmentFields, existing: EnrollmentFields | None) -> None:
    policy = enrollment.allocation_policy
    hubs = enrollment.iot_hubs or []
    if hubs and policy is None:
        raise bad_request(
            "Enrollment allocationPolicy must be specified when iotHubs are specified."
        )
    if policy == "custom":
        definition = enrollment.custom_allocation_definition
        if definition is None:
            raise bad_request(
                "A CustomAllocationDefinition is required when the allocation policy is set to"
                " 'Custom'."
            )
        url = urlparse(definition.webhook_url)
        if url.scheme not in ("http", "https", IN_PROCESS_SCHEME) or not url.netloc:
            raise bad_request(
                "customAllocationDefinition.webhookUrl must be an absolute http or https URL,"
                " or allocator://NAME for a function configured with `serve --allocator`."
            )
        old = existing.custom_allocation_definition if existing else None
        if definition.webhook_secret is None and old is not None:
            definition.webhook_secret = old.webhook_secret  # write-only, as keys are
    if policy == "static" and len(hubs) > 1:
        raise bad_request("A static allocation policy takes exactly one IoT hub in iotHubs.")
    if policy is not None and enrollment.iot_hub_host_name:
        raise bad_request("iotHubHostName and allocationPolicy cannot both be set; use iotHubs.")


def public_view(enrollment: EnrollmentFields) -> dict[str, Any]:
    """The enrollment as GET and query show it: the attestation type, never its keys."""
    view = enrollment.model_copy()
    view.attestation = enrollment.attestation.without_secrets()
    definition = enrollment.custom_allocation_definition
    if definition is not None and definition.webhook_secret is not None:
        view.custom_allocation_definition = definition.model_copy(update={"webhook_secret": None})
    return view.to_wire()


def device_id_of(enrollment: EnrollmentFields, registration_id: str) -> str:
    """The device's id on its hub: an individual enrollment's deviceId, else the registration id."""
    if isinstance(enrollment, IndividualEnrollment) and enrollment.device_id:
        return enrollment.device_id
    return registration_id


def default_registration_state(registration_id: str) -> dict[str, Any]:
    return {"registrationId": registration_id, "status": "unassigned"}
