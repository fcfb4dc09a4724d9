"""The attestation stage against in-memory ports: scope, ids, keys, groups, TPM challenges."""

from __future__ import annotations

import base64

import pytest
from cryptography.hazmat.primitives.asymmetric import rsa

from devprov.attestation import sas
from devprov.attestation.tpm import registration_id_for
from devprov.domain.errors import DpsError
from devprov.domain.keys import derive_device_key
from devprov.domain.models import EnrollmentGroup, IndividualEnrollment
from devprov.registration.attest import Attestation, DeviceProof
from tests.helpers import device_token
from tests.registration.fakes import KEY, MemoryChallenges, MemoryDirectory, individual
from tests.tpm_support import EK_ATTRIBUTES, rsa_storage_public

SCOPE = "0ne00000001"


def stage(directory: MemoryDirectory | None = None) -> tuple[Attestation, MemoryChallenges]:
    challenges = MemoryChallenges()
    return Attestation(SCOPE, directory or MemoryDirectory(), challenges), challenges


def token(registration_id: str, key: str = KEY) -> DeviceProof:
    return DeviceProof(device_token(f"{SCOPE}/registrations/{registration_id}", key))


async def refusal(attestation: Attestation, registration_id: str, proof: DeviceProof) -> DpsError:
    with pytest.raises(DpsError) as caught:
        await attestation.attest(SCOPE, registration_id, proof)
    return caught.value


async def test_an_individual_enrollment_attests_its_device() -> None:
    attestation, _ = stage(MemoryDirectory(individuals={"dev-1": individual()}))
    attested = await attestation.attest(SCOPE.upper(), "DEV-1", token("DEV-1"))
    assert attested.registration_id == "DEV-1"
    assert attested.group_id is None
    assert attested.hub_authentication["symmetricKey"]["primaryKey"] == KEY


async def test_a_group_attests_with_the_derived_key() -> None:
    group = EnrollmentGroup.model_validate(
        {
            "enrollmentGroupId": "fleet",
            "attestation": {
                "type": "symmetricKey",
                "symmetricKey": {"primaryKey": KEY, "secondaryKey": KEY},
            },
        }
    )
    attestation, _ = stage(MemoryDirectory(group_list=[group]))
    attested = await attestation.attest(
        SCOPE, "dev-9", token("dev-9", derive_device_key(KEY, "dev-9"))
    )
    assert attested.group_id == "fleet"


def symmetric_group(group_id: str, key: str) -> EnrollmentGroup:
    return EnrollmentGroup.model_validate(
        {
            "enrollmentGroupId": group_id,
            "attestation": {
                "type": "symmetricKey",
                "symmetricKey": {"primaryKey": key, "secondaryKey": key},
            },
        }
    )


async def test_a_burst_from_one_group_tries_that_group_first(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    keys = [base64.b64encode(bytes([n]) * 32).decode() for n in range(1, 6)]
    groups = [symmetric_group(f"fleet-{n}", key) for n, key in enumerate(keys)]
    attestation, _ = stage(MemoryDirectory(group_list=groups))
    signed: list[bytes] = []
    real_sign = sas.sign

    def counted_sign(key: bytes, resource: str, expiry: int | str) -> bytes:
        signed.append(key)
        return real_sign(key, resource, expiry)

    monkeypatch.setattr(sas, "sign", counted_sign)

    async def attest(number: int) -> str | None:
        device = f"dev-{number}"
        proof = token(device, derive_device_key(keys[-1], device))
        return (await attestation.attest(SCOPE, device, proof)).group_id

    assert await attest(1) == "fleet-4"
    first = len(signed)
    signed.clear()
    assert await attest(2) == "fleet-4"
    assert len(signed) == 1 < first  # the last group's key, as sent: one HMAC


@pytest.mark.parametrize(
    ("registration_id", "proof", "status", "words"),
    [
        ("dev-1", DeviceProof(), 401, "No credentials"),
        ("dev 1", DeviceProof(), 400, "not valid"),
        ("ghost", None, 401, "No enrollment matches"),
    ],
)
async def test_refusals_say_why(
    registration_id: str, proof: DeviceProof | None, status: int, words: str
) -> None:
    attestation, _ = stage(MemoryDirectory(individuals={"dev-1": individual()}))
    error = await refusal(attestation, registration_id, proof or token(registration_id))
    assert error.status == status and words in error.message


async def test_another_id_scope_is_refused() -> None:
    attestation, _ = stage(MemoryDirectory(individuals={"dev-1": individual()}))
    with pytest.raises(DpsError, match="not served here"):
        await attestation.attest("0ne99999999", "dev-1", token("dev-1"))


async def test_a_tpm_challenge_is_issued_then_used_once() -> None:
    ek = rsa_storage_public(rsa.generate_private_key(65537, 2048).public_key(), EK_ATTRIBUTES)
    srk = rsa_storage_public(rsa.generate_private_key(65537, 2048).public_key())
    registration_id = registration_id_for(ek)
    enrollment = IndividualEnrollment.model_validate(
        {
            "registrationId": registration_id,
            "attestation": {
                "type": "tpm",
                "tpm": {"endorsementKey": base64.b64encode(ek).decode()},
            },
        }
    )
    attestation, challenges = stage(MemoryDirectory(individuals={registration_id: enrollment}))
    keys = {
        "endorsementKey": base64.b64encode(ek).decode(),
        "storageRootKey": base64.b64encode(srk).decode(),
    }
    with pytest.raises(Exception, match="resend request") as raised:
        await attestation.challenge(SCOPE, registration_id, keys, None)
    assert getattr(raised.value, "status", None) == 401
    challenge = await challenges.read(registration_id)
    assert challenge is not None and not challenge["used"]

    key = base64.b64encode(base64.b64decode(challenge["key"])).decode()
    proof = token(registration_id, key)
    attested = await attestation.attest(SCOPE, registration_id, proof, registering=True)
    assert "authenticationKey" in attested.registration_attestation["tpm"]
    assert (await challenges.read(registration_id) or {})["used"]

    with pytest.raises(DpsError, match="already used"):
        await attestation.attest(SCOPE, registration_id, proof, registering=True)
    polled = await attestation.attest(SCOPE, registration_id, proof)  # polls may reuse it
    assert polled.registration_id == registration_id
