"""Identifier rules for registration ids, enrollment group ids, device ids and every other name."""

from __future__ import annotations

import re

from devprov.domain.errors import bad_request

_ID_PATTERN = re.compile(r"[A-Za-z0-9\-._:]{0,127}[A-Za-z0-9\-]")
MAX_ID_LENGTH = 128
# C0 and C1 control characters (NUL among them) and lone surrogates: no name may hold one
# (PostgreSQL cannot store NUL in text, a surrogate is not UTF-8, and the others hide in logs).
_UNPRINTABLE = re.compile(r"[\x00-\x1f\x7f-\x9f\ud800-\udfff]")


def check_name(value: str, what: str = "name") -> str:
    """Any id or name from outside (a hub's host name, a CA's or a policy's name, a path
    segment, a search prefix): refused with 400004 when it holds a control character."""
    found = _UNPRINTABLE.search(value)
    if found is not None:
        raise bad_request(
            f"The {what} {value!r} is not valid: it contains the control character"
            f" U+{ord(found.group()):04X}."
        )
    return value


def validate_id(value: str, what: str = "registration id") -> str:
    """DPS ids: at most 128 characters of alphanumerics and - . _ :, ending alphanumeric or '-'."""
    if not isinstance(value, str) or not _ID_PATTERN.fullmatch(value):
        raise bad_request(
            f"The {what} {value!r} is not valid: use at most {MAX_ID_LENGTH} characters from"
            " A-Z a-z 0-9 - . _ : and end with an alphanumeric character or '-'."
        )
    return value


def id_key(value: str) -> str:
    """Ids are compared without regard to case, so they are stored under their lower-case form.

    Every lookup goes through here, so a key with a control character is refused (400004)
    before any store sees it."""
    return check_name(value, "id").lower()
