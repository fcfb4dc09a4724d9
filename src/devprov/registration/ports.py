"""What the registration service needs from storage: small ports the store adapter implements."""

from __future__ import annotations

from typing import Any, Protocol

from cryptography import x509

from devprov.domain.cas import KnownCa
from devprov.domain.credentials import Issuer
from devprov.domain.models import EnrollmentGroup, IndividualEnrollment, LinkedHub
from devprov.domain.records import Revisions

Document = dict[str, Any]


class RegistrationRecords(Protocol):
    """Each device's registration record (its DeviceRegistrationState), by registration id."""

    async def read_with_revisions(self, registration_id: str) -> tuple[Revisions, Document | None]:
        """The record and the directory's revisions in one round trip (a register needs both)."""
        ...

    async def read(self, registration_id: str) -> Document | None: ...

    async def answered_by(self, registration_id: str, operation_id: str) -> Document | None:
        """The record, if the operation `operation_id` wrote it."""
        ...

    async def save(self, record: Document, group_id: str | None, operation_id: str) -> None: ...


class Operations(Protocol):
    """The status of registrations that were not answered at once, which devices poll."""

    async def read(self, operation_id: str) -> Document | None: ...

    async def save(self, operation_id: str, registration_id: str, status: Document) -> None: ...


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
