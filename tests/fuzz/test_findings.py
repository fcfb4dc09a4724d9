"""Each finding of the fuzzers, kept as the input that found it (base64) and what must happen.

The inputs were found by tests/fuzz/run.py (atheris) on the named target; before the fix each
raised an exception of its own where a refusal belonged: a 500 in the service API (an
enrollment's or CA's certificate) or in a register with a csr; and, latent (the callers compare
`sr` first), in the SAS signature check for a token with bytes that are not UTF-8.
"""

from __future__ import annotations

import base64

import pytest

from devprov.attestation.sas import parse_sas
from devprov.domain.certificates import load_certificate
from devprov.domain.credentials import parse_csr
from devprov.domain.errors import CSR_INVALID, UNAUTHORIZED, VALIDATION, DpsError
from tests.fuzz import targets

FINDINGS = {
    "certificate_version_18": (
        "LS0tLS1CRUdJTiBDRVJUSUZJQ0FURS0tLS0tCk1JSUJDekNCczZBREFnRVNBZ0VCTUFvR0NDcUdTTTQ5QkFNQ01C"
        "QXhEakFNQmdOVkJBTU1CV1JsZGkweE1CNFgKRFRJMk1USXdNVEU0TkRNd00xb1hEVEkyTVRJd01qRTRORE13TTFv"
        "d0VERU9NQXdHQTFVRUF3d0ZaR1YyTFRFdwpXVEFUQmdjcWhrak9QUUlCQmdncWhrak9QUU1CQndOQ0FBVHNmUTVG"
        "OCtoR3NWTWlwbllGQWNRTUF1SDZRVHZqCmVUZUJabjdLd1A4U2VJbERuTHgrMDhwY2Ewckd1Wk1rUVpyRG9ISEd0"
        "OWM3VDREU3VhWUFDOEpjTUFvR0NDcUcKU000OUJBTUNBMGNBTUVRQ0lGZ0RZeUszMlJETitxL3l4ZmdWbFhMWXg3"
        "dk1UZUV1RFZ2LzRhMy9MNmUxQWlCQwpzVjU5Sjg4VlIzeVZMaU56TXFQYWZRaW9VMHFuVVJmbzRkNktDVWdkZXc9"
        "PQotLS0tLUVORCBDRVJUSUZJQ0FURS0tLS0tCg=="
    ),
    "certificate_subject_unparsable": (
        "TUlJQkREQ0JzNkFEQWdFQ0FnRUJNQW9HQ0NxR1NNNDlCQU1DTUJBeERqQU1CZ05WQkFNTUJXUmxkaTB4TUI0WERU"
        "STJNVEl3TVRFNE5ESTFOVm9YRFRJMk1USXdNakU0TkRJMU5Wb3dFREVPTUF3R0ExVUVBd3dGWkdWMkxNRXdXVEFU"
        "QmdjcWhrak9QUUlCQmdncWhrak9QUU1CQndOQ0FBUTdLcHVLUURoK2JETzdrZnhWbFlFbEo1dGZIRytONTAzWXhr"
        "UVIvVlZ0bk16MnV4OVFYU3cwYzRMS21LQXoxOXBEem8rNDNaVkZDTjFzVWFtd3dYQ0FNQW9HQ0NxR1NNNDlCQU1D"
        "QTBnQU1FVUNJRWZnL0R6YzQvOEVtQTNNdVlWWm5zaU1CWWhHZEJqTEdSTG1aalZDSHM4ZUFpRUFqUTM1My9yemtZ"
        "TjVtWW0xSnlMSmFsak9vK1dwN2J6WkwzaElNeHl1a240PQ=="
    ),
    "certificate_issuer_bitstring": (
        "TUlJQkREQ0JzNkFEQWdFQ0FnRUJNQW9HQ0NxR1NNNDlCQU1DTUJBeERqQU1CZ05WQkFNREJXUmxkaTBHTUI0WERU"
        "STJNVEl3TVRFNE5ETXdPVm9YRFRJMk1USXdNakU0TkRNd09Wb3dFREVPTUF3R0EwVUVBd3dGWkdWMkxURXdXVEFU"
        "QmdjcWhrak9QUUlCQmdncWhrak9QUU1CQndOQ0FBVEJHVnlIdGVPdFVpSDROYXpkY0NOUXhYWU40ckJEa2tnK2NR"
        "Uk95OERheDF6OXJYcXZpRDBrN1M0Y0ZvQ09yMisyaHRJS2wxajYxWEtoYVBibGhFYUhNQW9HQ0NxR1NNNDlCQU1D"
        "QTBnQU1FVUNJUUMvMFowd3hCQkhEby9pWVdkdVNnbTlrODdFdEFSVklNa0FNYkg2Ri8yVkV3SWdEclZaMldUOGpW"
        "TXJtTnBOcm9WMDNBZXFtaWtkVG1RSkt2SDF1a3YzSFZVPQ=="
    ),
    "csr_unknown_key_type": (
        "TUlISk1ISUNBUUF3RURFT01Bd0dBMVVFQXd3RlpHVjJMVEV3V1RBVEJnY3FoUElCUU9rakJnZ3Foa2pPUFFNQkJ3"
        "TkNBQVNudTl1VFZ3OThaUk1MdG5qQUdEektzQnZBY0s1V3FYcXJCMnNNanBSSWxMU3hHWitjNVhnWXJ6YWNDMXpt"
        "WmZzZ2FGdHp3WVVqcWNJd2hJbE5ERFlGb0FBd0NnWUlLb1pJemowRUF3SURSd0F3UkFJZ0ZtSDJWNnFUVjQzdG9y"
        "TlkwN2pnY0paUE5JTVRsRytBVHNLRGFneEQzRllDSUNHb2cycHg4MDVCNnRKVWxzWVhkTFR2UDZRNTdUNDZZSlFE"
        "NFR3WmZ4UXo="
    ),
    "csr_invalid_key": (
        "TUlITE1ISUNBUUF3RURFT01Bd0dBMVVFQXd3RlpHVjJMVEV3V1RBVEJnY3Foa2pPUFFJQkJnZ3Foa2pPUFFNQkJ3"
        "TkNBQVFtT2lxZmpoRXh6cGNuZFFTaHlocW5EOU9wVEdDUFMvRDdtRkZUS3pobmJXRzRGSW1IRzdjMFVpTGM2RHdD"
        "eDNSMndKVm9aUHd6eDNyTDlFWm9LM1I5b0FBd0NnWUlLb1pJemowRUF3SURTUUF3UmdJaEFQUFg0dTN1Qlk4ZkpT"
        "WmkyMVA5VlpyeUcrYWxqcjUwc2JwcUdWaGpPVWFhQWlFQWcyQVM3ckoreDJQeDZrbE4vZExvRERjb3FIVFdiLzRy"
        "OU9qQklNeDFGUGM9"
    ),
}


def finding(name: str) -> str:
    return base64.b64decode("".join(FINDINGS[name])).decode()


@pytest.mark.parametrize(
    "name",
    ["certificate_version_18", "certificate_subject_unparsable", "certificate_issuer_bitstring"],
)
def test_a_certificate_cryptography_cannot_read_is_400004(name: str) -> None:
    """cryptography reads fields lazily: the subject of one, the issuer of another raised
    ValueError/TypeError later, mid-request; version 18 raised InvalidVersion at load."""
    with pytest.raises(DpsError) as refused:
        load_certificate(finding(name))
    assert (refused.value.status, refused.value.error_code) == (400, VALIDATION)
    targets.x509_input(finding(name).encode())


@pytest.mark.parametrize("name", ["csr_unknown_key_type", "csr_invalid_key"])
def test_a_csr_whose_key_cannot_be_loaded_is_400012(name: str) -> None:
    """`is_signature_valid` raised ValueError ("Invalid key") or UnsupportedAlgorithm."""
    with pytest.raises(DpsError) as refused:
        parse_csr(finding(name), "dev-1")
    assert (refused.value.status, refused.value.error_code) == (400, CSR_INVALID)
    targets.x509_input(finding(name).encode())


def test_a_sas_token_with_bytes_that_are_not_utf8_is_401() -> None:
    """aiohttp hands such header bytes on as surrogates; quote() then raised
    UnicodeEncodeError while checking the signature."""
    header = b"SharedAccessSignature sr=0ne00000001%2Fregistra\x8c\x96s%2Fdev-1&sig=AAAA&se=1"
    with pytest.raises(DpsError) as refused:
        parse_sas(header.decode("utf-8", "surrogateescape"))
    assert (refused.value.status, refused.value.error_code) == (401, UNAUTHORIZED)
    targets.sas_token(header)
