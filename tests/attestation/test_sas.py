"""SAS tokens: parsing, the encodings each official SDK signs, expiry."""

from __future__ import annotations

import base64
import re
import time
from urllib.parse import quote

import pytest

from devprov.attestation.sas import (
    build_sas,
    check_expiry,
    parse_sas,
    sign,
    signature_matches,
)
from devprov.domain.errors import DpsError
from devprov.domain.keys import decode_key, generate_key
from tests.helpers import device_token

RESOURCE = "0ne00ABCDEF/registrations/dev-1"
KEY = generate_key()
OTHER_KEY = generate_key()


def refusal(header: str | None) -> DpsError:
    with pytest.raises(DpsError) as caught:
        parse_sas(header)
    return caught.value


# parse_sas ------------------------------------------------------------------------------


def test_parse_reads_every_field() -> None:
    signature = b"\x01\x02\xfe\xff" * 8
    sig = quote(base64.b64encode(signature).decode(), safe="")
    token = parse_sas(
        f"SharedAccessSignature sr=0ne00ABCDEF%2Fregistrations%2Fdev-1&sig={sig}"
        "&se=1700000000&skn=registration"
    )
    assert token.resource_as_sent == "0ne00ABCDEF%2Fregistrations%2Fdev-1"
    assert token.resource == RESOURCE
    assert token.signature == signature
    assert token.expiry == 1700000000
    assert token.key_name == "registration"


@pytest.mark.parametrize(
    "body",
    [
        "sr={sr}&sig={sig}&se=1700000000&skn=registration",
        "sig={sig}&se=1700000000&skn=registration&sr={sr}",
        "skn=registration&se=1700000000&sr={sr}&sig={sig}",
        "se=1700000000&sr={sr}&skn=registration&sig={sig}",
    ],
)
def test_field_order_does_not_matter(body: str) -> None:
    sig = quote(base64.b64encode(b"x" * 32).decode(), safe="")
    token = parse_sas("SharedAccessSignature " + body.format(sr=RESOURCE, sig=sig))
    assert (token.resource, token.signature, token.expiry, token.key_name) == (
        RESOURCE,
        b"x" * 32,
        1700000000,
        "registration",
    )


def test_prefix_is_case_insensitive_and_skn_optional() -> None:
    sig = base64.b64encode(b"y" * 32).decode()
    token = parse_sas(f"sharedaccesssignature sr={RESOURCE}&sig={sig}&se=5")
    assert token.key_name is None
    assert token.signature == b"y" * 32


@pytest.mark.parametrize(
    "header",
    [
        None,
        "",
        "Bearer abc.def.ghi",
        f"SharedAccessSignature sig=AAAA&se=1700000000&sr={RESOURCE}&broken",
    ],
)
def test_missing_or_malformed_header_is_401000(header: str | None) -> None:
    error = refusal(header)
    assert (error.status, error.error_code) == (401, 401000)


@pytest.mark.parametrize(
    "header",
    [
        "SharedAccessSignature sig=AAAA&se=1700000000",
        f"SharedAccessSignature sr={RESOURCE}&se=1700000000",
        f"SharedAccessSignature sr={RESOURCE}&sig=AAAA",
        f"SharedAccessSignature sr={RESOURCE}&sig=AAAA&se=tomorrow",
        f"SharedAccessSignature sr={RESOURCE}&sig=not*base64!&se=1700000000",
        f"SharedAccessSignature sr={RESOURCE}&sig=AAA&se=1700000000",
    ],
    ids=["no-sr", "no-sig", "no-se", "se-not-int", "sig-bad-chars", "sig-bad-padding"],
)
def test_missing_fields_and_bad_values_are_401000(header: str) -> None:
    error = refusal(header)
    assert (error.status, error.error_code) == (401, 401000)
    assert "sr, sig (base64) and se" in error.message


# signature_matches: the tokens each SDK writes ------------------------------------------


@pytest.mark.parametrize("style", ["node", "python", "c"])
def test_every_sdk_style_is_accepted(style: str) -> None:
    header = device_token(RESOURCE, KEY, style=style)
    token = parse_sas(header)
    assert token.resource == RESOURCE
    assert signature_matches(token, [decode_key(KEY)])
    assert signature_matches(token, [decode_key(OTHER_KEY), decode_key(KEY)])
    assert not signature_matches(token, [decode_key(OTHER_KEY)])


def test_sig_escapes_in_lower_case_are_accepted() -> None:
    """The C SDK lower-cases the hex escapes of `sig` as well as of `sr`."""
    header = device_token(RESOURCE, KEY, style="c")
    lowered = re.sub(r"%[0-9A-F]{2}", lambda match: match.group(0).lower(), header)
    assert "%3d" in lowered.split("&sig=")[1]  # a 32-byte HMAC always ends in '='
    token = parse_sas(lowered)
    assert token.signature == parse_sas(header).signature
    assert signature_matches(token, [decode_key(KEY)])


def test_sdk_styles_put_sr_on_the_wire_as_documented() -> None:
    node = parse_sas(device_token(RESOURCE, KEY, style="node"))
    python = parse_sas(device_token(RESOURCE, KEY, style="python"))
    c = parse_sas(device_token(RESOURCE, KEY, style="c"))
    assert node.resource_as_sent == RESOURCE
    assert node.key_name == "registration"
    assert python.resource_as_sent == "0ne00ABCDEF%2Fregistrations%2Fdev-1"
    assert python.key_name is None
    assert c.resource_as_sent == "0ne00ABCDEF%2fregistrations%2fdev-1"


def test_encoded_sr_signed_in_its_raw_form_is_accepted() -> None:
    """The Java SDK sends sr encoded but signs the raw resource URI."""
    expiry = int(time.time()) + 60
    sig = base64.b64encode(sign(decode_key(KEY), RESOURCE, expiry)).decode()
    token = parse_sas(
        f"SharedAccessSignature sr={quote(RESOURCE, safe='')}&sig={quote(sig, safe='')}"
        f"&se={expiry}&skn=registration"
    )
    assert signature_matches(token, [decode_key(KEY)])


def test_tampering_with_expiry_or_resource_breaks_the_signature() -> None:
    header = device_token(RESOURCE, KEY, style="python", expiry=1800000000)
    assert signature_matches(parse_sas(header), [decode_key(KEY)])
    assert not signature_matches(
        parse_sas(header.replace("se=1800000000", "se=1800000001")), [decode_key(KEY)]
    )
    assert not signature_matches(parse_sas(header.replace("dev-1", "dev-2")), [decode_key(KEY)])


def test_build_sas_makes_a_token_parse_and_verify_accept() -> None:
    header = build_sas("dps.example", KEY, ttl_seconds=120, key_name="provisioningserviceowner")
    token = parse_sas(header)
    assert token.resource == "dps.example"
    assert token.key_name == "provisioningserviceowner"
    assert token.expiry > time.time()
    assert signature_matches(token, [decode_key(KEY)])


# Expiry ------------------------------------------------------------------------------------


def test_expiry_is_checked_against_now() -> None:
    token = parse_sas(device_token(RESOURCE, KEY, expiry=1000))
    check_expiry(token, now=999)
    for now in (1000, 1001):
        with pytest.raises(DpsError) as caught:
            check_expiry(token, now=now)
        assert (caught.value.status, caught.value.error_code) == (401, 401001)


def test_fresh_and_stale_tokens_against_the_clock() -> None:
    check_expiry(parse_sas(device_token(RESOURCE, KEY, ttl=3600)))
    with pytest.raises(DpsError) as caught:
        check_expiry(parse_sas(device_token(RESOURCE, KEY, expiry=int(time.time()) - 1)))
    assert caught.value.error_code == 401001
