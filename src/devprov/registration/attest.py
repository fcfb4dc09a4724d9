"""The attestation stage: who a device is, from its id scope, its id and the proof it sent."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from cryptography import x509

from devprov.attestation import tpm_device
from devprov.attestation.attested import Attested
from devprov.attestation.device_auth import attest_symmetric_key
from devprov.attestation.sas import DEFAULT_MAX_LIFETIME_SECONDS
from devprov.attestation.x509 import attest_x509
from devprov.domain.errors import unauthorized
from devprov.domain.ids import validate_id
from devprov.domain.models import EnrollmentGroup, IndividualEnrollment
from devprov.domain.records import Revisions
from devprov.registration.ports import Directory, TpmChallenges


@dataclass(frozen=True)
class DeviceProof:
    """What a device sent to prove who it is: a SAS token, TPM keys, a client certificate
    chain (leaf first), or several of these."""

    authorization: str | None = None
    certificates: tuple[x509.Certificate, ...] = ()
    tpm: dict[str, Any] | None = None

    @property
    def asks_for_tpm_challenge(self) -> bool:
        """A TPM's first register carries its EK and SRK and no token."""
        return self.tpm is not None and self.authorization is None


class Attestation:
    """Checks proofs against the directory; issues and consumes TPM challenges."""

    def __init__(
        self,
        id_scope: str,
        directory: Directory,
        challenges: TpmChallenges,
        max_token_lifetime: float = DEFAULT_MAX_LIFETIME_SECONDS,
    ) -> None:
        self.max_token_lifetime = max_token_lifetime
        self.id_scope = id_scope
        self.directory = directory
        self.challenges = challenges
        self._last_group: str | None = None  # the symmetric-key group that attested last

    async def _individual(
        self, id_scope: str, registration_id: str, revisions: Revisions | None
    ) -> IndividualEnrollment | None:
        validate_id(registration_id)
        if id_scope.lower() != self.id_scope.lower():
            raise unauthorized(f"The id scope {id_scope!r} is not served here.")
        await self.directory.refresh(revisions)
        return await self.directory.individual(registration_id)

    async def challenge(
        self,
        id_scope: str,
        registration_id: str,
        tpm: dict[str, Any],
        revisions: Revisions | None,
    ) -> None:
        """Answer a TPM's first register: remember a new key and raise the challenge that
        carries it, which only that TPM can open."""
        individual = await self._individual(id_scope, registration_id, revisions)
        pending = await self.challenges.read(registration_id)
        record, challenge = tpm_device.challenge(
            registration_id, individual, tpm_device.TpmKeys.from_body(tpm), pending
        )
        if record is not None:
            await self.challenges.issue(registration_id, record)
        raise challenge

    async def attest(
        self,
        id_scope: str,
        registration_id: str,
        proof: DeviceProof,
        *,
        registering: bool = False,
        revisions: Revisions | None = None,
    ) -> Attested:
        """Check who the device is, or raise a 401/403 that says why not.

        A token from a TPM-enrolled device is checked against the key of its challenge (which
        a register consumes); any other token is a symmetric-key SAS; no token but a client
        certificate is X.509."""
        individual = await self._individual(id_scope, registration_id, revisions)
        if proof.authorization is not None:
            if individual is not None and individual.attestation.type == "tpm":
                return await self._tpm_token(registration_id, individual, proof, registering)
            groups = [] if individual else await self.directory.groups("symmetricKey")
            attested = attest_symmetric_key(
                proof.authorization, self.id_scope, registration_id, individual,
                self._last_matched_first(groups), self.max_token_lifetime,
            )  # fmt: skip
            self._last_group = attested.group_id or self._last_group
            return attested
        if proof.certificates:
            groups = [] if individual else await self._x509_groups()
            cas = await self.directory.known_cas()
            issuers = await self.directory.credential_cas()
            return attest_x509(
                registration_id, proof.certificates, individual, groups, cas, issuers=issuers
            )
        raise unauthorized(
            "No credentials: send a SharedAccessSignature, a TPM's keys, or a client certificate."
        )

    def _last_matched_first(self, groups: list[EnrollmentGroup]) -> list[EnrollmentGroup]:
        """Fleets arrive in bursts from one group, and each group tried costs two HMACs: the
        group that matched last is tried first, so a burst costs one group's, however many
        groups there are."""
        for index, group in enumerate(groups):
            if group.enrollment_group_id == self._last_group:
                return [group, *groups[:index], *groups[index + 1 :]]
        return groups

    async def _x509_groups(self) -> list[EnrollmentGroup]:
        """X.509 groups, and groups of other kinds whose credential policy issues certificates
        (their devices come back with them)."""
        groups = list(await self.directory.groups("x509"))
        for kind in ("symmetricKey", "tpm"):
            groups += [g for g in await self.directory.groups(kind) if g.credential_policy_name]
        return groups

    async def _tpm_token(
        self,
        registration_id: str,
        individual: IndividualEnrollment,
        proof: DeviceProof,
        registering: bool,
    ) -> Attested:
        """The hub key's blob is wrapped for the SRK the TPM sends with its signed register
        (else for the one it sent when it asked for the challenge)."""
        challenge = await self.challenges.read(registration_id)
        srk = tpm_device.TpmKeys.from_body(proof.tpm).storage_root_key if proof.tpm else None
        attested = tpm_device.attest_tpm_token(
            registration_id,
            individual,
            proof.authorization or "",
            challenge,
            registering=registering,
            max_lifetime=self.max_token_lifetime,
            storage_root_key=srk,
        )
        used = registering and challenge is not None
        if used and not await self.challenges.use(registration_id, challenge or {}):
            raise tpm_device.challenge_already_used(registration_id)
        return attested
