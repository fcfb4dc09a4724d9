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


@pytest.mark.parametrize("value", ["a\x00b", "\x01", "hub\n.example", "x\x7f", "x\x85", "\ud800"])
def test_a_control_character_in_any_name_or_key_is_400004(value: str) -> None:
    from devprov.domain.ids import check_name

    with pytest.raises(DpsError) as refused:
        check_name(value, "IoT hub host name")
    assert (refused.value.status, refused.value.error_code) == (400, 400004)
    assert "control character" in refused.value.message
    with pytest.raises(DpsError):
        id_key(value)


def test_printable_names_pass_unchanged() -> None:
    from devprov.domain.ids import check_name

    assert check_name("hub-1.example.com") == "hub-1.example.com"
    assert check_name("café ☕") == "café ☕"
