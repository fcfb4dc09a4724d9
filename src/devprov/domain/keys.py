"""Symmetric keys: generation, validation, and the keys a group derives for its devices."""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import secrets

from devprov.domain.errors import bad_request

GENERATED_KEY_BYTES = 64
MIN_KEY_BYTES = 16
MAX_KEY_BYTES = 64


def generate_key() -> str:
    return base64.b64encode(secrets.token_bytes(GENERATED_KEY_BYTES)).decode()


def decode_key(key_b64: str) -> bytes:
    return base64.b64decode(key_b64)


def validate_key(key_b64: str, which: str) -> str:
    """User-supplied keys must be base64 of 16 to 64 bytes (DPS's rule)."""
    try:
        raw = base64.b64decode(key_b64, validate=True)
    except (binascii.Error, ValueError):
        raise bad_request(f"The {which} is not valid base64.") from None
    if not MIN_KEY_BYTES <= len(raw) <= MAX_KEY_BYTES:
        raise bad_request(
            f"The {which} must be between {MIN_KEY_BYTES} and {MAX_KEY_BYTES} bytes long;"
            f" it is {len(raw)}."
        )
    return key_b64


def derive_device_key(group_key_b64: str, registration_id: str) -> str:
    """A group device's key: base64(HMAC-SHA256(group key, registration id))."""
    digest = hmac.new(decode_key(group_key_b64), registration_id.encode(), hashlib.sha256).digest()
    return base64.b64encode(digest).decode()
