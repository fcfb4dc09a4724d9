"""Identifier rules for registration ids, enrollment group ids and device ids."""

from __future__ import annotations

import re

from devprov.domain.errors import bad_request

_ID_PATTERN = re.compile(r"[A-Za-z0-9\-._:]{0,127}[A-Za-z0-9\-]")
MAX_ID_LENGTH = 128


def validate_id(value: str, what: str = "registration id") -> str:
    """DPS ids: at most 128 characters of alphanumerics and - . _ :, ending alphanumeric or '-'."""
    if not isinstance(value, str) or not _ID_PATTERN.fullmatch(value):
        raise bad_request(
            f"The {what} {value!r} is not valid: use at most {MAX_ID_LENGTH} characters from"
            " A-Z a-z 0-9 - . _ : and end with an alphanumeric character or '-'."
        )
    return value


def id_key(value: str) -> str:
    """Ids are compared without regard to case, so they are stored under their lower-case form."""
    return value.lower()
