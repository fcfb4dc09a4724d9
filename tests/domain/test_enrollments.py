"""Writing enrollments and groups: ids, keys, allocation rules, timestamps, etags, views."""

from __future__ import annotations

import base64
import re
from typing import Any

import pytest

from devprov.domain.enrollments import (
    default_registration_state,
    enrollment_id,
    prepare_for_write,
    public_view,
)
from devprov.domain.errors import DpsError
from devprov.domain.keys import generate_key
from devprov.domain.models import EnrollmentGroup, IndividualEnrollment

TIMESTAMP = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{7}Z$")
HOOK = {"webhookUrl": "https://hooks.example/allocate?code=k", "apiVersion": "2021-10-01"}


def individual(registration_id: str = "dev-1", **fields: Any) -> IndividualEnrollment:
    return IndividualEnrollment.model_validate(
        {"registrationId": registration_id, "attestation": {"type": "symmetricKey"}, **fields}
    )


def group(group_id: str = "grp-1", **fields: Any) -> EnrollmentGroup:
    return EnrollmentGroup.model_validate(
        {"enrollmentGroupId": group_id, "attestation": {"type": "symmetricKey"}, **fields}
    )


def refused(
    incoming: IndividualEnrollment | EnrollmentGroup,
    path_id: str | None = None,
    existing: IndividualEnrollment | EnrollmentGroup | None = None,
) -> DpsError:
    with pytest.raises(DpsError) as caught:
        prepare_for_write(incoming, existing, path_id)  # type: ignore[type-var]
    assert caught.value.status == 400
    return caught.value


def keys_of(record: IndividualEnrollment | EnrollmentGroup) -> tuple[str, str]:
    keys = record.attestation.symmetric_key
    assert keys is not None and keys.primary_key and keys.secondary_key
    return keys.primary_key, keys.secondary_key


# Keys ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "attestation",
    [
        {"type": "symmetricKey"},
        {"type": "symmetricKey", "symmetricKey": {"primaryKey": None, "secondaryKey": None}},
    ],
)
def test_null_keys_are_generated_on_create(attestation: dict[str, Any]) -> None:
    for incoming in (individual(attestation=attestation), group(attestation=attestation)):
        primary, secondary = keys_of(prepare_for_write(incoming, None))  # type: ignore[type-var]
        assert len(base64.b64decode(primary, validate=True)) == 64
        assert len(base64.b64decode(secondary, validate=True)) == 64
        assert primary != secondary


def test_null_keys_are_kept_on_update() -> None:
    created = prepare_for_write(individual(), None)
    updated = prepare_for_write(individual(deviceId="renamed"), created)
    assert keys_of(updated) == keys_of(created)
    assert updated.device_id == "renamed"


def test_one_null_key_is_kept_and_the_other_replaced_on_update() -> None:
    created = prepare_for_write(group(), None)
    new_secondary = generate_key()
    updated = prepare_for_write(
        group(
            attestation={"type": "symmetricKey", "symmetricKey": {"secondaryKey": new_secondary}}
        ),
        created,
    )
    assert keys_of(updated) == (keys_of(created)[0], new_secondary)


def test_supplied_keys_are_validated_and_kept() -> None:
    primary = base64.b64encode(bytes(range(16))).decode()
    secondary = base64.b64encode(bytes(range(64))).decode()
    attestation = {
        "type": "symmetricKey",
        "symmetricKey": {"primaryKey": primary, "secondaryKey": secondary},
    }
    assert keys_of(prepare_for_write(individual(attestation=attestation), None)) == (
        primary,
        secondary,
    )


@pytest.mark.parametrize(
    ("which", "key"),
    [
        ("primaryKey", base64.b64encode(bytes(15)).decode()),
        ("secondaryKey", base64.b64encode(bytes(65)).decode()),
        ("primaryKey", "%%% not base64 %%%"),
    ],
)
def test_bad_supplied_keys_are_400004(which: str, key: str) -> None:
    attestation = {"type": "symmetricKey", "symmetricKey": {which: key}}
    error = refused(individual(attestation=attestation))
    assert error.error_code == 400004
    assert ("primary key" if which == "primaryKey" else "secondary key") in error.message


# Other attestations ------------------------------------------------------------------------


def test_attestation_rules() -> None:
    assert "none" in refused(individual(attestation={"type": "none"})).message
    assert (
        "TPM"
        in refused(group(attestation={"type": "tpm", "tpm": {"endorsementKey": "ek"}})).message
    )
    assert "endorsementKey" in refused(individual(attestation={"type": "tpm"})).message
    assert "X.509" in refused(individual(attestation={"type": "x509"})).message
    tpm = prepare_for_write(
        individual(attestation={"type": "tpm", "tpm": {"endorsementKey": "AToAAQALAAMAsgAg"}}),
        None,
    )
    assert tpm.attestation.symmetric_key is None


# Allocation ----------------------------------------------------------------------------------


def test_custom_policy_without_definition_is_400004_with_azures_message() -> None:
    for incoming in (individual(allocationPolicy="custom"), group(allocationPolicy="custom")):
        error = refused(incoming)
        assert error.error_code == 400004
        assert error.message.startswith(
            "A CustomAllocationDefinition is required when the allocation policy is set to 'Custom'"
        )


@pytest.mark.parametrize("url", ["ftp://hooks.example/x", "/relative/path", "https://", "hook"])
def test_custom_webhook_url_must_be_absolute_http(url: str) -> None:
    error = refused(
        group(
            allocationPolicy="custom",
            customAllocationDefinition={"webhookUrl": url, "apiVersion": "2021-10-01"},
        )
    )
    assert error.error_code == 400004
    assert "webhookUrl" in error.message


def test_custom_policy_with_definition_is_stored() -> None:
    record = prepare_for_write(
        group(allocationPolicy="custom", customAllocationDefinition=HOOK), None
    )
    assert record.to_wire()["customAllocationDefinition"] == HOOK


def test_iot_hubs_without_policy_is_400004_with_azures_message() -> None:
    error = refused(individual(iotHubs=["hub.example"]))
    assert error.error_code == 400004
    assert error.message == (
        "Enrollment allocationPolicy must be specified when iotHubs are specified."
    )


def test_static_takes_one_hub_and_host_name_excludes_a_policy() -> None:
    assert (
        refused(group(allocationPolicy="static", iotHubs=["a.example", "b.example"])).error_code
        == 400004
    )
    prepare_for_write(group(allocationPolicy="static", iotHubs=["a.example"]), None)
    error = refused(individual(allocationPolicy="hashed", iotHubHostName="a.example"))
    assert "iotHubHostName" in error.message
    legacy = prepare_for_write(individual(iotHubHostName="a.example"), None)
    assert legacy.iot_hub_host_name == "a.example"


# Ids ---------------------------------------------------------------------------------------


def test_body_and_path_ids_must_agree_without_regard_to_case() -> None:
    prepare_for_write(individual("Dev-1"), None, "dev-1")
    prepare_for_write(group("Grp-1"), None, "GRP-1")
    for incoming, path_id in ((individual("dev-1"), "dev-2"), (group("grp-1"), "grp-2")):
        error = refused(incoming, path_id)
        assert error.error_code == 400005
        assert repr(path_id) in error.message


@pytest.mark.parametrize("bad", ["", "dev.", "dev 1", "dév", "x" * 129])
def test_bad_ids_are_400004(bad: str) -> None:
    assert refused(individual(bad)).error_code == 400004
    assert refused(group(bad)).error_code == 400004
    device = refused(individual("dev-1", deviceId=bad))
    assert device.error_code == 400004
    assert "device id" in device.message


# What the service fills in -------------------------------------------------------------------


def test_service_fields_are_stamped() -> None:
    incoming = individual(
        etag="client-etag",
        createdDateTimeUtc="1999-01-01T00:00:00.0000000Z",
        registrationState={"registrationId": "dev-1", "status": "assigned"},
    )
    created = prepare_for_write(incoming, None)
    assert created.etag and created.etag != "client-etag"
    assert created.created_date_time_utc and TIMESTAMP.match(created.created_date_time_utc)
    assert created.created_date_time_utc == created.last_updated_date_time_utc
    assert created.registration_state is None
    assert incoming.etag == "client-etag"
    assert incoming.attestation.symmetric_key is None

    updated = prepare_for_write(individual(), created)
    assert updated.etag and updated.etag != created.etag
    assert updated.created_date_time_utc == created.created_date_time_utc
    assert updated.last_updated_date_time_utc and TIMESTAMP.match(
        updated.last_updated_date_time_utc
    )


def test_unknown_fields_are_kept() -> None:
    record = prepare_for_write(individual(clientCertificateIssuancePolicy={"x": 1}), None)
    assert record.to_wire()["clientCertificateIssuancePolicy"] == {"x": 1}


def test_public_view_hides_keys_without_touching_the_record() -> None:
    record = prepare_for_write(group(initialTwin={"tags": {"a": 1}}), None)
    view = public_view(record)
    assert view["attestation"] == {"type": "symmetricKey"}
    assert view["initialTwin"] == {"tags": {"a": 1}}
    assert view["enrollmentGroupId"] == "grp-1"
    assert keys_of(record)  # the stored record keeps its keys


def test_enrollment_id_and_default_state() -> None:
    assert enrollment_id(individual("dev-9")) == "dev-9"
    assert enrollment_id(group("grp-9")) == "grp-9"
    assert default_registration_state("Dev-9") == {
        "registrationId": "Dev-9",
        "status": "unassigned",
    }
