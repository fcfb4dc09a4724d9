"""X-Devprov-Signature: what a receiver accepts and what it refuses."""

from __future__ import annotations

from devprov.protocol.signature import signature, signature_header, verify_signature

SECRET = "a-long-random-secret"
BODY = b'{"action":"upsert","deviceId":"d1"}'


def test_a_fresh_signature_of_the_exact_body_verifies() -> None:
    header = signature_header(SECRET, BODY, timestamp=1_700_000_000)
    assert header == f"t=1700000000,v1={signature(SECRET, BODY, 1_700_000_000)}"
    assert verify_signature(BODY, header, SECRET, now=1_700_000_100)


def test_another_body_secret_or_a_stale_time_is_refused() -> None:
    header = signature_header(SECRET, BODY, timestamp=1_700_000_000)
    assert not verify_signature(BODY + b" ", header, SECRET, now=1_700_000_000)
    assert not verify_signature(BODY, header, "another-secret", now=1_700_000_000)
    assert not verify_signature(BODY, header, SECRET, now=1_700_000_301)
    assert not verify_signature(BODY, None, SECRET)
    assert not verify_signature(BODY, "v1=abc", SECRET)


def test_any_of_several_signatures_may_match_while_a_secret_rotates() -> None:
    old = signature("old-secret", BODY, 1_700_000_000)
    header = f"t=1700000000,v1={old},v1={signature(SECRET, BODY, 1_700_000_000)}"
    assert verify_signature(BODY, header, SECRET, now=1_700_000_000)
    assert verify_signature(BODY, header, "old-secret", now=1_700_000_000)
