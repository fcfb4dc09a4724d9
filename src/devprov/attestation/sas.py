"""Shared access signature tokens: parse, sign and verify them as the official clients write them.

The official clients disagree on how they encode the signed resource (`sr`): Node signs it raw,
the Python SDK percent-encodes it with upper-case hex, the C SDK with lower-case hex. DPS accepts
them all, so devprov computes the HMAC over `sr` exactly as it appears in the token, plus the
canonical encodings of its decoded form (only when the form as sent matches no key), and
compares each in constant time.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import re
import time
from dataclasses import dataclass
from urllib.parse import quote, quote_plus, unquote

from devprov.domain.errors import TOKEN_EXPIRED, TOKEN_TOO_LONG, DpsError, unauthorized

_PREFIX = "sharedaccesssignature "
DEFAULT_MAX_LIFETIME_SECONDS = 365 * 24 * 3600.0
"""How far in the future a token's expiry may be (the `sas_max_lifetime` setting's default)."""


@dataclass(frozen=True)
class SasToken:
    """A parsed token: the resource as sent (still encoded), signature bytes, expiry, key name."""

    resource_as_sent: str
    signature: bytes
    expiry: int
    expiry_as_sent: str
    key_name: str | None

    @property
    def resource(self) -> str:
        return unquote(self.resource_as_sent)


def parse_sas(header: str | None) -> SasToken:
    """Parse `SharedAccessSignature sr=..&sig=..&se=..[&skn=..]`, fields in any order."""
    if not header or not header.lower().startswith(_PREFIX):
        raise unauthorized("A SharedAccessSignature authorization is required.")
    try:
        header.encode()
    except UnicodeEncodeError:  # aiohttp hands on header bytes that are not UTF-8 as surrogates
        raise unauthorized("The SharedAccessSignature is malformed: it is not UTF-8.") from None
    fields: dict[str, str] = {}
    for pair in header[len(_PREFIX) :].strip().split("&"):
        name, sep, value = pair.partition("=")
        if not sep:
            raise unauthorized("The SharedAccessSignature is malformed.")
        fields[name.strip().lower()] = value.strip()
    try:
        signature = base64.b64decode(unquote(fields["sig"]), validate=True)
        expiry = int(fields["se"])
        resource = fields["sr"]
    except (KeyError, ValueError, binascii.Error):
        raise unauthorized(
            "The SharedAccessSignature must carry sr, sig (base64) and se (seconds)."
        ) from None
    return SasToken(resource, signature, expiry, fields["se"], fields.get("skn"))


def sign(key: bytes, resource_as_sent: str, expiry: int | str) -> bytes:
    return hmac.new(key, f"{resource_as_sent}\n{expiry}".encode(), hashlib.sha256).digest()


def _lower_hex_escapes(text: str) -> str:
    return re.sub(r"%[0-9A-F]{2}", lambda match: match.group(0).lower(), text)


def _signed_forms(token: SasToken) -> list[str]:
    decoded = token.resource
    upper = quote(decoded, safe="")
    forms = [token.resource_as_sent, decoded, upper, _lower_hex_escapes(upper)]
    plus = quote_plus(decoded, safe="")
    if plus != upper:
        forms.append(plus)
    return list(dict.fromkeys(forms))


def signature_matches(token: SasToken, keys: list[bytes]) -> bool:
    """True when any key signed the resource as sent or another accepted encoding of it.

    The form as sent, which is what every official client signs, is tried first with each
    key; the other encodings only when it matches none. Comparisons are constant-time; which
    key or encoding matched is no secret."""
    if _signed_by_any(token, keys, token.resource_as_sent):
        return True
    return any(_signed_by_any(token, keys, form) for form in _signed_forms(token)[1:])


def _signed_by_any(token: SasToken, keys: list[bytes], form: str) -> bool:
    return any(
        hmac.compare_digest(sign(key, form, token.expiry_as_sent), token.signature) for key in keys
    )


def check_expiry(
    token: SasToken,
    now: float | None = None,
    max_lifetime: float = DEFAULT_MAX_LIFETIME_SECONDS,
) -> None:
    """Refuse an expired token, and one whose expiry is more than `max_lifetime` seconds away
    (a token that never really expires cannot be revoked by waiting)."""
    current = time.time() if now is None else now
    if token.expiry <= current:
        raise DpsError(401, TOKEN_EXPIRED, "The SharedAccessSignature has expired.")
    if token.expiry - current > max_lifetime:
        raise DpsError(
            401,
            TOKEN_TOO_LONG,
            f"The SharedAccessSignature expires {token.expiry - current:.0f} s from now; this"
            f" server accepts at most {max_lifetime:.0f} s (sas_max_lifetime): sign a token"
            " with a nearer expiry (se).",
        )


def build_sas(
    resource: str, key_b64: str, ttl_seconds: int = 3600, key_name: str | None = None
) -> str:
    """Make a token the way the DPS docs write it: sr URL-encoded and signed in that form."""
    expiry = int(time.time()) + ttl_seconds
    encoded = quote(resource, safe="")
    signature = base64.b64encode(sign(base64.b64decode(key_b64), encoded, expiry)).decode()
    token = f"SharedAccessSignature sr={encoded}&sig={quote(signature, safe='')}&se={expiry}"
    return token + (f"&skn={key_name}" if key_name else "")
