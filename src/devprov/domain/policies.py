"""Shared access policies: a key name, two keys, and the service API rights they grant."""

from __future__ import annotations

from collections.abc import Callable

from pydantic import BaseModel, Field

ALL_RIGHTS = [
    "ServiceConfig",
    "EnrollmentRead",
    "EnrollmentWrite",
    "RegistrationStatusRead",
    "RegistrationStatusWrite",
]
OWNER_POLICY = "provisioningserviceowner"


class AccessPolicy(BaseModel):
    """A DPS shared access policy."""

    key_name: str
    primary_key: str
    secondary_key: str
    rights: list[str] = Field(default_factory=lambda: list(ALL_RIGHTS))


PolicyLookup = Callable[[str], AccessPolicy | None]
"""The policy of a key name (compared without case), or None."""
