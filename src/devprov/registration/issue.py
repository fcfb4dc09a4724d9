"""The issuing stage: a CSR checked before anything is recorded, and the device's certificate
signed by its enrollment's credential policy once a hub is chosen."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from cryptography import x509

from devprov.attestation.attested import Attested
from devprov.domain.certificates import sha256_thumbprint
from devprov.domain.credentials import Issuer, chain_of, issue_certificate, parse_csr
from devprov.domain.errors import CSR_NOT_ALLOWED, CSR_POLICY_UNKNOWN, DpsError
from devprov.registration.ports import CredentialIssuers


@dataclass(frozen=True)
class PendingIssue:
    """A CSR that passed every check, and the policy that will sign it."""

    csr: x509.CertificateSigningRequest
    issuer: Issuer


@dataclass(frozen=True)
class Issued:
    """What a registration carries back: the chain (base64 DER, leaf first) and the credential
    the device's hub identity gets (the issued leaf's thumbprint)."""

    chain: list[str]
    hub_authentication: dict[str, Any]


class Issuance:
    def __init__(self, issuers: CredentialIssuers | None) -> None:
        self.issuers = issuers

    async def prepare(self, attested: Attested, csr: Any) -> PendingIssue | None:
        """Refuse, before provisioning, a CSR that cannot be honoured: no policy on the
        enrollment (400015), a policy that does not exist (400016), a bad CSR (400012-400014)."""
        if csr is None:
            return None
        name = attested.enrollment.credential_policy_name
        if not name:
            raise DpsError(
                400,
                CSR_NOT_ALLOWED,
                "The register body carries a csr, but the enrollment names no"
                " credentialPolicyName: no certificate can be issued.",
            )
        issuer = await self.issuers.issuer(name) if self.issuers is not None else None
        if issuer is None:
            raise DpsError(
                400,
                CSR_POLICY_UNKNOWN,
                f"The enrollment's credential policy {name!r} does not exist.",
            )
        return PendingIssue(parse_csr(csr, attested.registration_id), issuer)

    @staticmethod
    def issue(attested: Attested, pending: PendingIssue) -> Issued:
        leaf = issue_certificate(pending.csr, attested.registration_id, pending.issuer)
        return Issued(
            chain_of(leaf, pending.issuer),
            {
                "type": "selfSigned",
                "x509Thumbprint": {
                    "primaryThumbprint": sha256_thumbprint(leaf),
                    "secondaryThumbprint": None,
                },
            },
        )
