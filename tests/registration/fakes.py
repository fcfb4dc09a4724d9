"""In-memory stand-ins for the registration service's ports, for unit tests of its stages."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from cryptography import x509

from devprov.domain.cas import KnownCa
from devprov.domain.ids import id_key
from devprov.domain.models import EnrollmentGroup, IndividualEnrollment, LinkedHub
from devprov.domain.records import Revisions
from devprov.hubs.connector import DeviceIdentity, Finding

Document = dict[str, Any]


@dataclass
class MemoryDirectory:
    individuals: dict[str, IndividualEnrollment] = field(default_factory=dict)
    group_list: list[EnrollmentGroup] = field(default_factory=list)
    hubs: list[LinkedHub] = field(default_factory=list)
    cas: dict[str, KnownCa] = field(default_factory=dict)
    issuing: dict[str, tuple[x509.Certificate, ...]] = field(default_factory=dict)
    refreshed: list[Revisions | None] = field(default_factory=list)

    async def refresh(self, revisions: Revisions | None = None) -> None:
        self.refreshed.append(revisions)

    async def individual(self, registration_id: str) -> IndividualEnrollment | None:
        return self.individuals.get(id_key(registration_id))

    async def groups(self, attestation_type: str) -> list[EnrollmentGroup]:
        return [g for g in self.group_list if g.attestation.type == attestation_type]

    async def linked_hubs(self) -> list[LinkedHub]:
        return self.hubs

    async def known_cas(self) -> dict[str, KnownCa]:
        return self.cas

    async def credential_cas(self) -> dict[str, tuple[x509.Certificate, ...]]:
        return self.issuing


@dataclass
class MemoryRecords:
    records: dict[str, tuple[Document, str | None, str]] = field(default_factory=dict)

    async def read_with_revisions(self, registration_id: str) -> tuple[Revisions, Document | None]:
        return (1,), await self.read(registration_id)

    async def read(self, registration_id: str) -> Document | None:
        found = self.records.get(id_key(registration_id))
        return found[0] if found else None

    async def answered_by(self, registration_id: str, operation_id: str) -> Document | None:
        found = self.records.get(id_key(registration_id))
        return found[0] if found and found[2] == operation_id else None

    async def save(self, record: Document, group_id: str | None, operation_id: str) -> None:
        self.records[id_key(record["registrationId"])] = (record, group_id, operation_id)


@dataclass
class MemoryOperations:
    statuses: dict[str, Document] = field(default_factory=dict)

    async def read(self, operation_id: str) -> Document | None:
        return self.statuses.get(operation_id)

    async def save(self, operation_id: str, registration_id: str, status: Document) -> None:
        self.statuses[operation_id] = status


@dataclass
class MemoryChallenges:
    challenges: dict[str, Document] = field(default_factory=dict)

    async def issue(self, registration_id: str, challenge: Document) -> None:
        self.challenges[id_key(registration_id)] = challenge

    async def read(self, registration_id: str) -> Document | None:
        return self.challenges.get(id_key(registration_id))

    async def use(self, registration_id: str, challenge: Document) -> bool:
        current = self.challenges.get(id_key(registration_id))
        if current != challenge or challenge.get("used"):
            return False
        self.challenges[id_key(registration_id)] = {**challenge, "used": True}
        return True


@dataclass
class MemoryHub:
    """A hub connector over a dict: devices by (hub, device id), with their twins."""

    devices: dict[tuple[str, str], DeviceIdentity] = field(default_factory=dict)
    twins: dict[tuple[str, str], dict[str, Any]] = field(default_factory=dict)
    fail_with: Exception | None = None
    started: int = 0
    closed: int = 0

    async def start(self) -> None:
        self.started += 1

    async def close(self) -> None:
        self.closed += 1

    async def upsert_device(self, hub: LinkedHub, identity: DeviceIdentity) -> None:
        if self.fail_with is not None:
            raise self.fail_with
        key = (hub.host_name, identity.device_id)
        self.devices[key] = identity
        if identity.initial_twin is not None:
            self.twins[key] = identity.initial_twin

    async def read_twin(self, hub: LinkedHub, device_id: str) -> dict[str, Any] | None:
        if self.fail_with is not None:
            raise self.fail_with
        return self.twins.get((hub.host_name, device_id))

    async def remove_device(self, hub: LinkedHub, device_id: str) -> None:
        self.devices.pop((hub.host_name, device_id), None)
        self.twins.pop((hub.host_name, device_id), None)

    async def check(self, hub: LinkedHub) -> list[Finding]:
        return [Finding("memory", True, "a dict")]


@dataclass
class OneConnector:
    """A ConnectorSource that hands every hub the same connector."""

    connector: MemoryHub

    async def for_hub(self, hub: LinkedHub) -> MemoryHub:
        return self.connector


def individual(registration_id: str = "dev-1", **fields: Any) -> IndividualEnrollment:
    return IndividualEnrollment.model_validate(
        {
            "registrationId": registration_id,
            "attestation": {
                "type": "symmetricKey",
                "symmetricKey": {"primaryKey": KEY, "secondaryKey": KEY},
            },
            **fields,
        }
    )


def linked(*names: str) -> list[LinkedHub]:
    return [LinkedHub(host_name=name) for name in names]


KEY = "c2VjcmV0LWtleS1vZi1leGFjdGx5LTMyLWJ5dGVzISE="
