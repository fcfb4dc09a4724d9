"""Symmetric keys: generation, the 16..64-byte rule, group-derived device keys."""

from __future__ import annotations

import base64

import pytest

from devprov.domain.errors import DpsError
from devprov.domain.keys import (
    decode_key,
    derive_device_key,
    generate_key,
    validate_key,
)

DOC_GROUP_KEY = (
    "8isrFI1sGsIlvvFSSFRiMfCNzv21fjbE/+ah/lSh3lF8e2YG1Te7w1KpZhJFFXJrqYKi9yegxkqIChbqOS9Egw=="
)
DOC_REGISTRATION_ID = "sn-007-888-abc-mac-a1-b2-c3-d4-e5-f6"
DOC_DEVICE_KEY = "Jsm0lyGpjaVYVP2g3FnmnmG9dI/9qU24wNoykUmermc="


def b64(size: int) -> str:
    return base64.b64encode(bytes(range(size))).decode()


def test_derived_key_matches_the_dps_documentation_vector() -> None:
    assert derive_device_key(DOC_GROUP_KEY, DOC_REGISTRATION_ID) == DOC_DEVICE_KEY


def test_derived_key_depends_on_registration_id_case_and_group_key() -> None:
    assert derive_device_key(DOC_GROUP_KEY, DOC_REGISTRATION_ID.upper()) != DOC_DEVICE_KEY
    assert derive_device_key(generate_key(), DOC_REGISTRATION_ID) != DOC_DEVICE_KEY
    assert len(decode_key(DOC_DEVICE_KEY)) == 32


def test_generated_keys_are_64_random_bytes() -> None:
    first, second = generate_key(), generate_key()
    assert len(base64.b64decode(first, validate=True)) == 64
    assert first != second
    assert validate_key(first, "primary key") == first


@pytest.mark.parametrize("size", [16, 32, 64])
def test_keys_of_16_to_64_bytes_are_accepted(size: int) -> None:
    key = b64(size)
    assert validate_key(key, "primary key") == key


@pytest.mark.parametrize("size", [0, 1, 15, 65, 128])
def test_keys_outside_16_to_64_bytes_are_refused(size: int) -> None:
    with pytest.raises(DpsError) as caught:
        validate_key(b64(size), "secondary key")
    error = caught.value
    assert (error.status, error.error_code) == (400, 400004)
    assert "secondary key" in error.message
    assert f"it is {size}" in error.message


@pytest.mark.parametrize("key", ["not base64!", "QUJD", "QUJDRA", "QUJD\nRA=="])
def test_non_base64_or_short_keys_are_refused(key: str) -> None:
    with pytest.raises(DpsError) as caught:
        validate_key(key, "primary key")
    assert (caught.value.status, caught.value.error_code) == (400, 400004)
