"""What every registration looks up, cached for as long as the store's revisions stay put.

Enrollments, groups, linked hubs and CAs are kept in memory for as long as the store's
revisions say none of them changed.

One small read of the revision counters before each use replaces reading and validating the
records themselves; any write to them, from any process (API, CLI, another worker), bumps a
revision in the same transaction, so a change is seen by the next registration.
"""

from __future__ import annotations

from collections import OrderedDict

from cryptography import x509

from devprov.domain.cas import KnownCa
from devprov.domain.certificates import load_certificate
from devprov.domain.credentials import CredentialPolicy
from devprov.domain.ids import id_key
from devprov.domain.models import EnrollmentGroup, IndividualEnrollment, LinkedHub
from devprov.domain.records import Kind, RecordStore, Revisions

MAX_CACHED_INDIVIDUALS = 10_000


class CachedDirectory:
    """The registration service's `Directory`: a cache of the records registrations read,
    invalidated by the store's revisions."""

    def __init__(self, store: RecordStore, max_individuals: int = MAX_CACHED_INDIVIDUALS) -> None:
        self.store = store
        self.max_individuals = max_individuals
        self._revisions: Revisions | None = None
        self._individuals: OrderedDict[str, IndividualEnrollment | None] = OrderedDict()
        self._individual_keys: set[str] | None = None
        self._groups: dict[str, list[EnrollmentGroup]] | None = None
        self._hubs: list[LinkedHub] | None = None
        self._cas: dict[str, KnownCa] | None = None
        self._credential_cas: dict[str, tuple[x509.Certificate, ...]] | None = None

    async def refresh(self, revisions: Revisions | None = None) -> None:
        """Drop everything if anything changed since the last look. Call once per use, with
        the store's revisions if the caller has just read them."""
        if revisions is None:
            revisions = await self.store.revisions()
        if revisions != self._revisions:
            self.invalidate()
            self._revisions = revisions

    def invalidate(self) -> None:
        self._revisions = None
        self._individuals.clear()
        self._individual_keys = None
        self._groups = self._hubs = self._cas = None
        self._credential_cas = None

    async def individual(self, registration_id: str) -> IndividualEnrollment | None:
        """The device's individual enrollment, or None.

        The ids of all individual enrollments are held (a few MB for a million), so a group
        device, which has none, costs no read at all."""
        key = id_key(registration_id)
        if self._individual_keys is None:
            self._individual_keys = set(await self.store.keys(Kind.ENROLLMENT))
        if key not in self._individual_keys:
            return None
        if key in self._individuals:
            self._individuals.move_to_end(key)
            return self._individuals[key]
        stored = await self.store.get(Kind.ENROLLMENT, key)
        found = IndividualEnrollment.model_validate(stored.document) if stored else None
        self._individuals[key] = found
        if len(self._individuals) > self.max_individuals:
            self._individuals.popitem(last=False)
        return found

    async def groups(self, attestation_type: str) -> list[EnrollmentGroup]:
        if self._groups is None:
            by_type: dict[str, list[EnrollmentGroup]] = {}
            for row in await self.store.page(Kind.GROUP):
                group = EnrollmentGroup.model_validate(row.document)
                by_type.setdefault(group.attestation.type, []).append(group)
            self._groups = by_type
        return self._groups.get(attestation_type, [])

    async def linked_hubs(self) -> list[LinkedHub]:
        if self._hubs is None:
            self._hubs = [
                LinkedHub.model_validate(row.document)
                for row in await self.store.page(Kind.LINKED_HUB)
            ]
        return self._hubs

    async def known_cas(self) -> dict[str, KnownCa]:
        if self._cas is None:
            self._cas = {
                row.key: KnownCa(
                    row.document["name"],
                    load_certificate(row.document["properties"]["certificate"]),
                    bool(row.document["properties"].get("isVerified")),
                )
                for row in await self.store.page(Kind.CERTIFICATE)
            }
        return self._cas

    async def credential_cas(self) -> dict[str, tuple[x509.Certificate, ...]]:
        if self._credential_cas is None:
            self._credential_cas = {
                row.key: CredentialPolicy.from_document(row.document).issuing_cas
                for row in await self.store.page(Kind.CREDENTIAL_POLICY)
            }
        return self._credential_cas
