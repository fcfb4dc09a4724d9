"""Identifier rules: DPS's character set and length, compared without case."""

from __future__ import annotations

import pytest

from devprov.domain.errors import DpsError
from devprov.domain.ids import MAX_ID_LENGTH, id_key, validate_id


@pytest.mark.parametrize(
    "value",
    [
        "a",
        "-",
        "dev-1",
        "Dev.Kitchen_01:toaster-",
        "sn-007-888-abc-mac-a1-b2-c3-d4-e5-f6",
        "x" * MAX_ID_LENGTH,
        "." * 127 + "z",
    ],
)
def test_valid_ids_are_returned_unchanged(value: str) -> None:
    assert validate_id(value) == value


@pytest.mark.parametrize(
    "value",
    [
        "",
        "x" * (MAX_ID_LENGTH + 1),
        "dev.",
        "dev_",
        "dev:",
        "dev 1",
        "dev/1",
        "dev%2F1",
        "dév-1",
        "dev-\uff11",
        "\ndev-1",
        "dev\n1",
    ],
)
def test_invalid_ids_are_400004_naming_the_kind(value: str) -> None:
    with pytest.raises(DpsError) as caught:
        validate_id(value, "enrollment group id")
    error = caught.value
    assert (error.status, error.error_code) == (400, 400004)
    assert error.message.startswith("The enrollment group id ")


@pytest.mark.parametrize("value", ["dev-1\n", "x" * MAX_ID_LENGTH + "\n"])
def test_trailing_newline_is_refused(value: str) -> None:
    with pytest.raises(DpsError):
        validate_id(value)


def test_non_strings_are_refused() -> None:
    with pytest.raises(DpsError):
        validate_id(42)  # type: ignore[arg-type]


def test_id_key_ignores_case() -> None:
    assert id_key("Dev-A.B_C:1") == "dev-a.b_c:1"
    assert id_key("DEV-1") == id_key("dev-1")
