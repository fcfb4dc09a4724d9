"""TPM attestation of a device: the activation challenge, and checking what the TPM signed.

The first register carries only the EK and SRK; the answer is HTTP 401 with an activation blob
that only that TPM can open, holding an HMAC key it imports. The device then signs its SAS token
with that key inside the TPM. devprov remembers the key per registration id (in the store, so
any worker can check it); a register consumes it, so the same signed token cannot register
twice, while polls of that registration may still use it. The final result carries another blob
with the key the device will use on its hub.
"""

from __future__ import annotations

import base64
import binascii
import secrets
import time
from dataclasses import dataclass
from typing import Any

from devprov.attestation.attested import Attested, require_enabled
from devprov.attestation.sas import (
    DEFAULT_MAX_LIFETIME_SECONDS,
    check_expiry,
    parse_sas,
    signature_matches,
)
from devprov.attestation.tpm import TpmError, TpmPublic, activation_blob, parse_public, same_key
from devprov.domain.errors import (
    ENROLLMENT_DISABLED,
    TPM_NOT_ENROLLED,
    Challenge,
    DpsError,
    bad_request,
    unauthorized,
)
from devprov.domain.models import IndividualEnrollment

KEY_NAME = "registration"
CHALLENGE_LIFETIME_SECONDS = 3600.0
"""A challenge stays the device's until used or this old: asking again meanwhile gets the same
key (wrapped anew), so whoever knows a TPM's public keys cannot void its pending challenge."""
CHALLENGE_MESSAGE = "Authorization required, resend request using supplied key"


class TpmChallenge(Challenge):
    """DPS answers a TPM's first register with 401 and this body."""

    def __init__(self, blob: bytes) -> None:
        super().__init__(
            401,
            {
                "message": CHALLENGE_MESSAGE,
                "authenticationKey": base64.b64encode(blob).decode(),
                "unencryptedAuthenticationKey": None,
                "keyName": KEY_NAME,
            },
        )


@dataclass(frozen=True)
class TpmKeys:
    endorsement_key: bytes
    storage_root_key: bytes

    @classmethod
    def from_body(cls, tpm: dict[str, Any]) -> TpmKeys:
        try:
            return cls(
                base64.b64decode(tpm["endorsementKey"], validate=True),
                base64.b64decode(tpm["storageRootKey"], validate=True),
            )
        except (KeyError, TypeError, binascii.Error, ValueError):
            raise bad_request(
                "tpm needs endorsementKey and storageRootKey, base64 TPM2B_PUBLIC."
            ) from None

    def parsed(self) -> tuple[TpmPublic, TpmPublic]:
        try:
            return parse_public(self.endorsement_key), parse_public(self.storage_root_key)
        except TpmError as exc:
            raise bad_request(f"The TPM keys are not usable: {exc}") from None

    def to_wire(self) -> dict[str, str]:
        return {
            "endorsementKey": base64.b64encode(self.endorsement_key).decode(),
            "storageRootKey": base64.b64encode(self.storage_root_key).decode(),
        }


def enrolled_tpm(registration_id: str, individual: IndividualEnrollment | None) -> bytes:
    """The EK enrolled for this registration id, or a 401 that says there is none."""
    tpm = individual.attestation.tpm if individual else None
    if individual is None or individual.attestation.type != "tpm" or tpm is None:
        raise unauthorized(f"No TPM enrollment exists for registration id {registration_id!r}.")
    return base64.b64decode(tpm.endorsement_key)


def pending_key(pending: dict[str, Any] | None, now: float | None = None) -> bytes | None:
    """The key of a challenge still outstanding (unused and not too old), if there is one."""
    if pending is None or pending.get("used"):
        return None
    issued = float(pending.get("issued", 0))
    if (time.time() if now is None else now) - issued >= CHALLENGE_LIFETIME_SECONDS:
        return None
    return base64.b64decode(pending["key"])


def challenge(
    registration_id: str,
    individual: IndividualEnrollment | None,
    keys: TpmKeys,
    pending: dict[str, Any] | None = None,
) -> tuple[dict[str, Any] | None, TpmChallenge]:
    """Check the EK is the enrolled one; answer the record to remember (None: keep `pending`,
    which is still outstanding, and send its key again) and the challenge.

    A refusal is a 401 with errorCode 401003 and its reason. (The Node TPM client reads any
    answer to its first register as a challenge and reports a malformed blob instead of the
    reason; the reason is in devprov's answer and log.)"""
    try:
        enrolled = enrolled_tpm(registration_id, individual)
    except DpsError as error:
        raise DpsError(401, TPM_NOT_ENROLLED, error.message) from None
    if not same_key(enrolled, keys.endorsement_key):
        raise DpsError(
            401,
            TPM_NOT_ENROLLED,
            f"The TPM's endorsement key is not the one enrolled for {registration_id!r}.",
        )
    if individual is not None and not individual.enabled:
        raise DpsError(403, ENROLLMENT_DISABLED, f"The enrollment {registration_id!r} is disabled.")
    ek, srk = keys.parsed()
    outstanding = pending_key(pending)
    if outstanding is not None:
        return None, TpmChallenge(activation_blob(ek, srk, outstanding))
    key = secrets.token_bytes(32)
    record = {
        "key": base64.b64encode(key).decode(),
        "storageRootKey": base64.b64encode(keys.storage_root_key).decode(),
        "issued": time.time(),
        "used": False,
    }
    return record, TpmChallenge(activation_blob(ek, srk, key))


def challenge_already_used(registration_id: str) -> DpsError:
    return unauthorized(
        f"The TPM challenge for {registration_id!r} was already used; register again"
        " without authorization to get a new one."
    )


def attest_tpm_token(
    registration_id: str,
    individual: IndividualEnrollment,
    authorization: str,
    record: dict[str, Any] | None,
    *,
    registering: bool,
    max_lifetime: float = DEFAULT_MAX_LIFETIME_SECONDS,
    storage_root_key: bytes | None = None,
) -> Attested:
    """Check a SAS token signed inside the TPM with the challenge key.

    When `registering`, the challenge must not have been used, and the result carries the
    blob with the device's hub key."""
    token = parse_sas(authorization)
    if record is None:
        raise unauthorized(
            f"No TPM challenge is outstanding for {registration_id!r}: register without"
            " authorization first."
        )
    if not signature_matches(token, [base64.b64decode(record["key"])]):
        raise unauthorized(f"The TPM-signed token for {registration_id!r} is not valid.")
    check_expiry(token, max_lifetime=max_lifetime)
    if registering and record.get("used"):
        raise challenge_already_used(registration_id)
    ek_bytes = enrolled_tpm(registration_id, individual)
    srk_bytes = storage_root_key or base64.b64decode(record["storageRootKey"])
    keys = TpmKeys(ek_bytes, srk_bytes)
    hub_key, secondary = secrets.token_bytes(32), secrets.token_bytes(32)
    result: dict[str, Any] = {}
    if registering:
        ek, srk = keys.parsed()
        blob = activation_blob(ek, srk, hub_key)
        result = {"tpm": {"authenticationKey": base64.b64encode(blob).decode()}}
    return require_enabled(
        Attested(
            registration_id,
            individual,
            hub_authentication={
                "type": "sas",
                "symmetricKey": {
                    "primaryKey": base64.b64encode(hub_key).decode(),
                    "secondaryKey": base64.b64encode(secondary).decode(),
                },
            },
            runtime_attestation={"tpm": keys.to_wire()},
            registration_attestation=result,
        )
    )
