"""What the registration service needs from storage: small ports the store adapter implements."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Protocol

from cryptography import x509

from devprov.domain.cas import KnownCa
from devprov.domain.claims import Claim
from devprov.domain.credentials import Issuer
from devprov.domain.models import EnrollmentGroup, IndividualEnrollment, LinkedHub
from devprov.domain.records import Revisions

Document = dict[str, Any]


class RegistrationRecords(Protocol):
    """Each device's registration record (its DeviceRegistrationState), by registration id."""

    async def read(self, registration_id: str) -> Document | None: ...

    async def answered_by(self, registration_id: str, operation_id: str) -> Document | None:
        """The record, if the operation `operation_id` wrote it."""
        ...

    async def save(
        self,
        record: Document,
        group_id: str | None,
        operation_id: str,
        claim: Claim | None = None,
        settled: bool = True,
        keep_claim: bool = False,
    ) -> None:
        """Write the record; with `claim`, let the claim go in the same transaction (when not
        `settled`, it is left expired instead, so that the device is cleaned up later; with
        `keep_claim`, it is kept, for work that follows the record)."""
        ...

    async def holders(self, hub: str, device_id: str) -> list[str]:
        """The registration ids (lower case) whose records put `device_id` on `hub`."""
        ...


class Claims(Protocol):
    """Registrations running now: at most one per registration id and per device id."""

    async def take(
        self, registration_id: str, device_id: str, owner: str, seconds: float
    ) -> Claim | None:
        """Claim both ids for `seconds`; None while another live claim holds either."""
        ...

    async def release(self, claim: Claim, settled: bool = True) -> None:
        """Let a claim go (not `settled`: leave it expired, for the sweep to clean up)."""
        ...

    async def expired(self, limit: int = 100) -> list[tuple[str, str]]:
        """(registration id, device id) of claims past their time."""
        ...


class Operations(Protocol):
    """The status of registrations that were not answered at once, which devices poll."""

    async def read(self, operation_id: str) -> Document | None: ...

    async def save(self, operation_id: str, registration_id: str, status: Document) -> None: ...

    async def orphaned(self, before: float, limit: int = 100) -> Sequence[tuple[str, str, str]]:
        """(operation id, registration id, etag) of operations still `assigning` that were
        last written before `before` (epoch seconds)."""
        ...

    async def settle(self, operation_id: str, etag: str, status: Document) -> bool:
        """Replace an operation's status if its etag is still `etag`."""
        ...


class TpmChallenges(Protocol):
    """The outstanding TPM challenge of each registration id."""

    async def issue(self, registration_id: str, challenge: Document) -> None: ...

    async def read(self, registration_id: str) -> Document | None: ...

    async def use(self, registration_id: str, challenge: Document) -> bool:
        """Mark `challenge` used; False if it was used already (or replaced) meanwhile."""
        ...


class Directory(Protocol):
    """What every registration looks up: enrollments, groups, linked hubs and CAs."""

    async def refresh(self, revisions: Revisions | None = None) -> None:
        """Forget what changed since the last look (once per registration)."""
        ...

    async def individual(self, registration_id: str) -> IndividualEnrollment | None: ...

    async def groups(self, attestation_type: str) -> list[EnrollmentGroup]: ...

    async def linked_hubs(self) -> list[LinkedHub]: ...

    async def known_cas(self) -> dict[str, KnownCa]: ...

    async def credential_cas(self) -> dict[str, tuple[x509.Certificate, ...]]:
        """Every credential policy's issuing CAs, by lower-case policy name."""
        ...


class CredentialIssuers(Protocol):
    """Credential policies with their current issuing CA's key, by name."""

    async def issuer(self, name: str) -> Issuer | None: ...
