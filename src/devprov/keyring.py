"""Where the sealing keys live: DEVPROV_SECRET_KEY when set, else the key file in the data dir.

Both hold base64 keys (32 bytes each), the sealing one first: the variable separated by commas,
the file (`DATA_DIR/secret.key`, mode 0600, made on first use) one a line. A key file is read
again whenever it changes, so a running devprov takes up a rotation at its next write; keys
from the variable are read once, at start (a rotation there needs a restart).
"""

from __future__ import annotations

import base64
import binascii
import os
import time
from collections.abc import Sequence
from pathlib import Path

from devprov.domain.sealing import KEY_BYTES, Sealer, SealingError, new_key

KEY_FILE = "secret.key"
RELOOK_SECONDS = 1.0
KEY_VARIABLE = "DEVPROV_SECRET_KEY"


def parse_keys(text: str, where: str) -> list[bytes]:
    """Base64 keys separated by commas or new lines (blank lines and `#` comments skipped)."""
    keys = []
    items = (i.strip() for line in text.splitlines() for i in line.split("#", 1)[0].split(","))
    for item in items:
        if not item:
            continue
        try:
            key = base64.b64decode(item, validate=True)
        except (binascii.Error, ValueError):
            raise SealingError(f"{where}: {item[:4]}... is not base64") from None
        if len(key) != KEY_BYTES:
            raise SealingError(f"{where}: a key is {KEY_BYTES} bytes (base64), not {len(key)}")
        keys.append(key)
    if not keys:
        raise SealingError(f"{where} holds no key")
    return keys


def encode_key(key: bytes) -> str:
    return base64.b64encode(key).decode()


def key_file(data_dir: Path) -> Path:
    return data_dir / KEY_FILE


def from_environment() -> bool:
    return bool(os.environ.get(KEY_VARIABLE, "").strip())


def write_key_file(data_dir: Path, keys: Sequence[bytes]) -> None:
    """Replace the key file atomically (mode 0600), the sealing key first."""
    data_dir.mkdir(parents=True, exist_ok=True)
    path = key_file(data_dir)
    temporary = path.with_suffix(".tmp")
    text = (
        "# devprov sealing keys (base64), the sealing one first; keep a copy apart from backups\n"
        + "".join(encode_key(key) + "\n" for key in keys)
    )
    with open(os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600), "w") as out:
        out.write(text)
        out.flush()
        os.fsync(out.fileno())
    temporary.replace(path)


class _KeyFile:
    """The key file, read again when it changes (checked by its mtime and size, at most once
    a second unless forced: a stat costs more than sealing)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._seen: tuple[int, int] | None = None
        self._looked = 0.0

    def read(self) -> list[bytes]:
        stat = self.path.stat()
        self._seen = (stat.st_mtime_ns, stat.st_size)
        return parse_keys(self.path.read_text(), str(self.path))

    def changed(self, force: bool = False) -> list[bytes] | None:
        now = time.monotonic()
        if not force and now - self._looked < RELOOK_SECONDS:
            return None
        self._looked = now
        try:
            stat = self.path.stat()
        except FileNotFoundError:
            return None  # keep what is held: a removed file must not stop a running server
        if (stat.st_mtime_ns, stat.st_size) == self._seen:
            return None
        return self.read()


def load_sealer(data_dir: Path, *, create: bool = True) -> Sealer:
    """The sealer of a data dir: keys from DEVPROV_SECRET_KEY, else from the key file, which
    is made (one new key) when missing and `create`."""
    variable = os.environ.get(KEY_VARIABLE, "").strip()
    if variable:
        return Sealer(parse_keys(variable, KEY_VARIABLE))
    path = key_file(data_dir)
    if not path.exists():
        if not create:
            raise SealingError(f"there is no key file at {path} (and {KEY_VARIABLE} is not set)")
        write_key_file(data_dir, [new_key()])
    source = _KeyFile(path)
    return Sealer(source.read(), source.changed)
