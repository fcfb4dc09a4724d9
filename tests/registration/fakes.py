"""In-memory stand-ins for the registration service's ports, for unit tests of its stages."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

from cryptography import x509

from devprov.domain.cas import KnownCa
from devprov.domain.claims import Claim
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
    claims: MemoryClaims | None = None

    async def read(self, registration_id: str) -> Document | None:
        found = self.records.get(id_key(registration_id))
        return found[0] if found else None

    async def answered_by(self, registration_id: str, operation_id: str) -> Document | None:
        found = self.records.get(id_key(registration_id))
        return found[0] if found and found[2] == operation_id else None

    async def save(
        self,
        record: Document,
        group_id: str | None,
        operation_id: str,
        claim: Claim | None = None,
        settled: bool = True,
        keep_claim: bool = False,
    ) -> None:
        self.records[id_key(record["registrationId"])] = (record, group_id, operation_id)
        if claim is not None and self.claims is not None and not (keep_claim and settled):
            await self.claims.release(claim, settled)

    async def holders(self, hub: str, device_id: str) -> list[str]:
        return [
            key
            for key, (record, _, _) in self.records.items()
            if (record.get("assignedHub") or "").lower() == hub.lower()
            and (record.get("deviceId") or "").lower() == device_id.lower()
        ]


@dataclass
class MemoryClaims:
    """Claims in a dict: (registration key) -> (device key, owner, expires at); with `records`,
    a claim carries what they hold for its ids."""

    claims: dict[str, tuple[str, str, float]] = field(default_factory=dict)
    records: MemoryRecords | None = None

    async def take(
        self, registration_id: str, device_id: str, owner: str, seconds: float
    ) -> Claim | None:
        key, device, now = id_key(registration_id), id_key(device_id), time.time()
        found = {k: v for k, v in self.claims.items() if k == key or v[0] == device}
        if any(expires >= now and holder != owner for _, holder, expires in found.values()):
            return None
        for k in found:
            del self.claims[k]
        self.claims[key] = (device, owner, now + seconds)
        stale = tuple(dict.fromkeys(d for d, holder, _ in found.values() if holder != owner))
        if self.records is None:
            return Claim(registration_id, device_id, owner, stale)
        held = self.records.records
        record = held[key][0] if key in held else None
        holders = tuple(
            (k, (r.get("assignedHub") or "").lower())
            for k, (r, _, _) in held.items()
            if (r.get("deviceId") or "").lower() == device and r.get("assignedHub")
        )
        return Claim(registration_id, device_id, owner, stale, record, holders)

    async def release(self, claim: Claim, settled: bool = True) -> None:
        key = id_key(claim.registration_id)
        current = self.claims.get(key)
        if current is None or current[1] != claim.owner:
            return
        if settled:
            del self.claims[key]
        else:
            self.claims[key] = (current[0], current[1], 0.0)

    async def expired(self, limit: int = 100) -> list[tuple[str, str]]:
        now = time.time()
        return [(k, v[0]) for k, v in self.claims.items() if v[2] < now][:limit]


@dataclass
class MemoryOperations:
    statuses: dict[str, Document] = field(default_factory=dict)

    async def read(self, operation_id: str) -> Document | None:
        return self.statuses.get(operation_id)

    async def save(self, operation_id: str, registration_id: str, status: Document) -> None:
        self.statuses[operation_id] = status

    async def orphaned(self, before: float, limit: int = 100) -> list[tuple[str, str, str]]:
        return []  # written now: never older than a deadline in a unit test

    async def settle(self, operation_id: str, etag: str, status: Document) -> bool:
        self.statuses[operation_id] = status
        return True


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
