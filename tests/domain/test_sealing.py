"""The sealer: what it seals opens under any key it holds, names its key, and refuses what was
tampered with or sealed under a key it does not hold; the key sources' parsing."""

from __future__ import annotations

import base64
from pathlib import Path

import pytest

from devprov.domain.sealing import Sealer, SealingError, is_sealed, key_id, new_key, sealed_under
from devprov.keyring import KEY_VARIABLE, encode_key, key_file, load_sealer, parse_keys


def test_a_sealed_value_opens_and_names_its_key() -> None:
    key = new_key()
    sealer = Sealer([key])
    sealed = sealer.seal(b"secret bytes")
    assert is_sealed(sealed) and sealed_under(sealed) == key_id(key) == sealer.current_id
    assert b"secret" not in sealed.encode()
    assert sealer.open(sealed) == b"secret bytes"
    assert sealer.seal(b"secret bytes") != sealed  # a fresh nonce each time
    assert sealer.open_text("not sealed") == "not sealed"  # written before devprov sealed


def test_the_first_key_seals_and_every_key_opens() -> None:
    old, new = new_key(), new_key()
    before = Sealer([old]).seal_text("v")
    both = Sealer([new, old])
    assert both.open_text(before) == "v"
    assert sealed_under(both.seal_text("v")) == key_id(new)
    assert both.needs_sealing(before) and both.needs_sealing("plain")
    assert not both.needs_sealing(both.reseal_text(before))


def test_a_key_not_held_or_a_changed_value_is_refused() -> None:
    sealed = Sealer([new_key()]).seal_text("v")
    with pytest.raises(SealingError, match="not held"):
        Sealer([new_key()]).open_text(sealed)
    sealer = Sealer([new_key()])
    sealed = sealer.seal_text("value")
    body = sealed.rsplit(":", 1)[1]
    flipped = body[:-2] + ("A" if body[-2] != "A" else "B") + body[-1]
    with pytest.raises(SealingError, match="does not open"):
        sealer.open_text(sealed.rsplit(":", 1)[0] + ":" + flipped)
    with pytest.raises(SealingError):
        Sealer([b"short"])


def test_keys_parse_from_lines_or_commas_and_a_bad_one_is_told(tmp_path: Path) -> None:
    one, two = new_key(), new_key()
    text = f"# comment, with a comma\n{encode_key(one)}\n\n{encode_key(two)}  # old\n"
    assert parse_keys(text, "file") == [one, two]
    assert parse_keys(f"{encode_key(one)}, {encode_key(two)}", "var") == [one, two]
    with pytest.raises(SealingError, match="not base64"):
        parse_keys("not-base64!", "var")
    with pytest.raises(SealingError, match="32 bytes"):
        parse_keys(base64.b64encode(b"short").decode(), "var")
    with pytest.raises(SealingError, match="no key"):
        parse_keys("# nothing\n", "file")


def test_the_key_file_is_made_0600_and_the_variable_wins(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv(KEY_VARIABLE, raising=False)
    with pytest.raises(SealingError, match="no key file"):
        load_sealer(tmp_path, create=False)
    made = load_sealer(tmp_path)
    assert key_file(tmp_path).stat().st_mode & 0o777 == 0o600
    assert load_sealer(tmp_path).current_id == made.current_id
    key = new_key()
    monkeypatch.setenv(KEY_VARIABLE, encode_key(key))
    assert load_sealer(tmp_path).key_ids == [key_id(key)]
