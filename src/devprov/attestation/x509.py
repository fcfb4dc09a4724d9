"""X.509 attestation: chain validation, and matching a presented chain to an enrollment.

TLS only establishes that the device holds the key of the leaf it presented and that its chain
reaches some certificate devprov knows (see server/trust.py). Everything that decides *whether
the device may register* happens here, in the application, where each refusal can say what was
wrong: the chain is validated with `cryptography`'s verifier (signatures, validity dates, CA
basic constraints, path to the enrolled certificate), the leaf's CN must be the registration
id, and a group's CA reference must name a CA whose possession was proven.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any

from cryptography import x509
from cryptography.x509.verification import (
    Criticality,
    ExtensionPolicy,
    PolicyBuilder,
    Store,
    VerificationError,
)

from devprov.attestation.attested import Attested, require_enabled
from devprov.domain.cas import KnownCa
from devprov.domain.certificates import (
    certificate_info,
    common_name,
    load_certificate,
    sha256_thumbprint,
)
from devprov.domain.clock import format_timestamp, utc_now
from devprov.domain.errors import INVALID_CERTIFICATE, DpsError, unauthorized
from devprov.domain.models import EnrollmentFields, EnrollmentGroup, IndividualEnrollment

# Device certificates made by DPS users' scripts rarely follow the web PKI profile, so only what
# chain building needs is required: CAs must assert basicConstraints; anything else may appear.
_CA_POLICY = ExtensionPolicy.permit_all().require_present(
    x509.BasicConstraints, Criticality.AGNOSTIC, None
)
_LEAF_POLICY = ExtensionPolicy.permit_all()


def validate_chain(
    leaf: x509.Certificate,
    intermediates: Sequence[x509.Certificate],
    anchor: x509.Certificate,
    now: datetime | None = None,
) -> list[x509.Certificate]:
    """The verified path from `leaf` to `anchor`, or a 401002 that says why there is none."""
    _check_dates([leaf, *intermediates], now)
    verifier = (
        PolicyBuilder()
        .store(Store([anchor]))
        .time(now or utc_now())
        .extension_policies(ca_policy=_CA_POLICY, ee_policy=_LEAF_POLICY)
        .build_client_verifier()
    )
    try:
        return list(verifier.verify(leaf, list(intermediates)).chain)
    except VerificationError as exc:
        raise DpsError(
            401,
            INVALID_CERTIFICATE,
            f"The certificate chain of {common_name(leaf)!r} does not lead to"
            f" {common_name(anchor)!r}: {exc}",
        ) from None


def _check_dates(chain: Sequence[x509.Certificate], now: datetime | None) -> None:
    """Say plainly which certificate is expired or not yet valid (the verifier's words are
    about candidate paths)."""
    moment = now or utc_now()
    for cert in chain:
        if cert.not_valid_after_utc < moment:
            raise DpsError(
                401,
                INVALID_CERTIFICATE,
                f"The certificate {common_name(cert)!r} expired on"
                f" {format_timestamp(cert.not_valid_after_utc)}.",
            )
        if cert.not_valid_before_utc > moment:
            raise DpsError(
                401,
                INVALID_CERTIFICATE,
                f"The certificate {common_name(cert)!r} is not valid before"
                f" {format_timestamp(cert.not_valid_before_utc)}.",
            )


IssuingCas = Mapping[str, Sequence[x509.Certificate]]
"""Each credential policy's issuing CAs, by lower-case policy name."""


def policy_cas(enrollment: EnrollmentFields, issuers: IssuingCas) -> Sequence[x509.Certificate]:
    """The CAs of the enrollment's credential policy: certificates they issued to its devices
    are accepted whatever the enrollment's own attestation is."""
    name = enrollment.credential_policy_name
    return issuers.get(name.lower(), ()) if name else ()


def group_anchors(
    group: EnrollmentGroup, cas: Mapping[str, KnownCa], issuers: IssuingCas | None = None
) -> list[tuple[x509.Certificate, KnownCa | None]]:
    """The certificates a group trusts: its signing certificates, the CAs it refers to, and
    its credential policy's issuing CAs."""
    anchors: list[tuple[x509.Certificate, KnownCa | None]] = [
        (ca, None) for ca in policy_cas(group, issuers or {})
    ]
    x509_attestation = group.attestation.x509
    if group.attestation.type != "x509" or x509_attestation is None:
        return anchors
    for entry in (x509_attestation.signing_certificates or {}).values():
        if isinstance(entry, dict) and entry.get("certificate"):
            anchors.append((load_certificate(entry["certificate"]), None))
    for name in (x509_attestation.ca_references or {}).values():
        known = cas.get(str(name).lower()) if name else None
        if known is not None:
            anchors.append((known.certificate, known))
    return anchors


def enrolled_client_certificates(enrollment: IndividualEnrollment) -> list[x509.Certificate]:
    x509_attestation = enrollment.attestation.x509
    if x509_attestation is None:
        return []
    return [
        load_certificate(entry["certificate"])
        for entry in (x509_attestation.client_certificates or {}).values()
        if isinstance(entry, dict) and entry.get("certificate")
    ]


def attest_x509(
    registration_id: str,
    chain: Sequence[x509.Certificate],
    individual: IndividualEnrollment | None,
    groups: Sequence[EnrollmentGroup],
    cas: Mapping[str, KnownCa],
    now: datetime | None = None,
    issuers: IssuingCas | None = None,
) -> Attested:
    """Match the presented chain (leaf first) to the device's enrollment.

    An individual enrollment, when there is one, decides alone: it must hold the very leaf the
    device presented, or name the credential policy whose CA issued it. Otherwise the chain
    is walked from the leaf up and the first group whose signing certificate, verified CA or
    credential policy CA appears in it wins (as DPS does).
    """
    if not chain:
        raise unauthorized("No client certificate was presented.")
    leaf, intermediates = chain[0], list(chain[1:])
    name = common_name(leaf)
    if name is None or name.lower() != registration_id.lower():
        raise DpsError(
            401,
            INVALID_CERTIFICATE,
            f"The certificate's subject CN {name!r} is not the registration id"
            f" {registration_id!r}.",
        )
    if individual is not None:
        for issuer in policy_cas(individual, issuers or {}):
            if issuer.subject == leaf.issuer:
                validate_chain(leaf, intermediates, issuer, now)
                return require_enabled(_attested(registration_id, individual, leaf, issuer))
        enrolled = enrolled_client_certificates(individual)
        if individual.attestation.type != "x509" or not enrolled:
            raise unauthorized(
                f"The enrollment for {registration_id!r} uses {individual.attestation.type}"
                " attestation, not an X.509 certificate."
            )
        if not any(cert == leaf for cert in enrolled):
            raise DpsError(
                401,
                INVALID_CERTIFICATE,
                f"The certificate presented by {registration_id!r} is not the one enrolled.",
            )
        # The very certificate enrolled, whose key TLS proved: only its dates are left to
        # check. It may be X.509 v1, as DPS allows here (common tooling makes v1 ones).
        _check_dates([leaf], now)
        return require_enabled(_attested(registration_id, individual, leaf, None))
    for position in range(len(chain) + 1):
        for group in groups:
            for anchor, ca in group_anchors(group, cas, issuers):
                if not _anchors_at(chain, position, anchor):
                    continue
                if ca is not None and not ca.verified:
                    raise DpsError(
                        401,
                        INVALID_CERTIFICATE,
                        f"The CA {ca.name!r} of enrollment group"
                        f" {group.enrollment_group_id!r} was added but its possession was never"
                        " verified.",
                    )
                _check_versions([*chain[: position + 1], anchor])
                validate_chain(leaf, intermediates, anchor, now)
                return require_enabled(_attested(registration_id, group, leaf, anchor))
    raise DpsError(
        401,
        INVALID_CERTIFICATE,
        f"No enrollment trusts the certificate chain of {registration_id!r}"
        f" (issuer {leaf.issuer.rfc4514_string()!r}).",
    )


def _check_versions(chain: Sequence[x509.Certificate]) -> None:
    """A chain to a group is made of X.509 v3 certificates (a CA's basic constraints are an
    extension, which v1 lacks); v1 is for an individual enrollment's own certificate."""
    for cert in chain:
        if cert.version is not x509.Version.v3:
            raise DpsError(
                401,
                INVALID_CERTIFICATE,
                f"The certificate {common_name(cert)!r} is X.509 {cert.version.name}: a chain to"
                " an enrollment group needs v3 certificates (v1 is accepted only as an"
                " individual enrollment's own certificate).",
            )


def _anchors_at(chain: Sequence[x509.Certificate], position: int, anchor: x509.Certificate) -> bool:
    """Whether `anchor` is chain[position], or (past the presented chain's end) its issuer."""
    if position < len(chain):
        return chain[position] == anchor
    return chain[-1].issuer == anchor.subject


def _attested(
    registration_id: str,
    enrollment: IndividualEnrollment | EnrollmentGroup,
    leaf: x509.Certificate,
    signer: x509.Certificate | None,
) -> Attested:
    """The hub identity is `selfSigned` with the presented leaf's thumbprint, as DPS creates it."""
    result: dict[str, Any] = {"certificateInfo": certificate_info(leaf)}
    if isinstance(enrollment, EnrollmentGroup):
        result["enrollmentGroupId"] = enrollment.enrollment_group_id
    if signer is not None:
        result["signingCertificateInfo"] = certificate_info(signer)
    return Attested(
        registration_id,
        enrollment,
        hub_authentication={
            "type": "selfSigned",
            "x509Thumbprint": {
                "primaryThumbprint": sha256_thumbprint(leaf),
                "secondaryThumbprint": None,
            },
        },
        runtime_attestation={"x509": {"clientCertificate": certificate_info(leaf)}},
        registration_attestation={"x509": result},
    )
