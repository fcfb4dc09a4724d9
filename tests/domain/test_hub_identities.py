"""Device identities as IoT Hub's registry keeps them: credentials, status, views."""

from __future__ import annotations

import pytest

from devprov.domain.errors import DpsError
from devprov.domain.hub_identities import (
    HubError,
    checked_authentication,
    device_view,
    dps_twin,
    new_device,
    provisioned_view,
    twin_view,
    updated_device,
)
from devprov.domain.keys import generate_key

NOW = "2026-12-01T00:00:00.0000000Z"
THUMB = "AB" * 32


def test_empty_sas_keys_are_generated_and_kept_on_update() -> None:
    device = new_device("dev-1", {"type": "sas", "symmetricKey": {"primaryKey": ""}}, None, NOW)
    keys = device["authentication"]["symmetricKey"]
    assert (
        keys["primaryKey"] and keys["secondaryKey"] and keys["primaryKey"] != keys["secondaryKey"]
    )
    again = updated_device(device, {"type": "sas", "symmetricKey": {}}, None, NOW)
    assert again["authentication"]["symmetricKey"] == keys
    assert again["etag"] != device["etag"]


def test_a_new_device_is_enabled_with_a_fresh_twin() -> None:
    twin = {"tags": {"a": 1}, "properties": {"desired": {"b": 2}}}
    device = new_device(
        "dev-1", None, {"iotEdge": True}, NOW, initial_twin=twin, registration_id="r"
    )
    assert device["status"] == "enabled" and device["capabilities"] == {"iotEdge": True}
    assert device["twin"]["properties"]["desired"]["$version"] == 1
    assert dps_twin(device) == twin
    assert provisioned_view(device, "h.example")["registrationId"] == "r"


def test_self_signed_thumbprints_are_hex_of_sha1_or_sha256() -> None:
    auth = checked_authentication(
        {"type": "selfSigned", "x509Thumbprint": {"primaryThumbprint": THUMB.lower()}}
    )
    assert auth["x509Thumbprint"] == {"primaryThumbprint": THUMB, "secondaryThumbprint": None}
    for bad in ("XYZ", "AB" * 31, None):
        with pytest.raises(DpsError):
            checked_authentication(
                {"type": "selfSigned", "x509Thumbprint": {"primaryThumbprint": bad}}
            )


@pytest.mark.parametrize(
    ("authentication", "words"),
    [
        ({"type": "kerberos"}, "authentication.type"),
        ({"type": "sas", "symmetricKey": {"primaryKey": "not base64!"}}, "base64"),
        ({"type": "sas", "symmetricKey": {"primaryKey": "c2hvcnQ="}}, "16 and 64"),
        ("sas", "JSON object"),
    ],
)
def test_bad_authentication_is_refused_naming_the_field(authentication: object, words: str) -> None:
    with pytest.raises(DpsError) as refused:
        checked_authentication(authentication)
    assert refused.value.status == 400 and words in refused.value.message


@pytest.mark.parametrize("device_id", ["", "a/b", "a#b", "a+b", "x" * 129, "dév"])
def test_device_ids_that_cannot_travel_in_a_topic_are_refused(device_id: str) -> None:
    with pytest.raises(HubError) as refused:
        new_device(device_id, None, None, NOW)
    assert refused.value.name == "ArgumentInvalid"


def test_views_hide_the_twin_from_the_device_json_and_show_identity_beside_the_twin() -> None:
    device = new_device(
        "dev-1", {"type": "sas", "symmetricKey": {"primaryKey": generate_key()}}, None, NOW
    )
    shown = device_view(device, connected=True)
    assert "twin" not in shown and shown["connectionState"] == "Connected"
    twin = twin_view(device)
    assert twin["deviceId"] == "dev-1" and twin["authenticationType"] == "sas"
    assert twin["properties"]["reported"]["$version"] == 1 and "etag" in twin
