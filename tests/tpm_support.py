"""Test support for TPM attestation: a software stand-in for a TPM, and a real swtpm."""

from __future__ import annotations

import base64
import hashlib
import hmac
import os
import shutil
import socket
import struct
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms

from devprov.attestation.sas import sign
from devprov.attestation.tpm import parse_public, registration_id_for
from devprov.client.tpm import TOOLS

try:
    from cryptography.hazmat.decrepit.ciphers.modes import CFB
except ImportError:  # cryptography < 47
    from cryptography.hazmat.primitives.ciphers.modes import CFB

EK_POLICY = bytes.fromhex("837197674484b3f81a90cc8d46a5d724fd52d76e06520b64f2a1da1b331469aa")
EK_ATTRIBUTES = (
    0x000300B2  # fixedTPM|fixedParent|sensitiveDataOrigin|adminWithPolicy|restricted|decrypt
)
SRK_ATTRIBUTES = (
    0x00030472  # fixedTPM|fixedParent|sensitiveDataOrigin|userWithAuth|noDA|restricted|decrypt
)
SRK_TEMPLATE_ATTRIBUTES = (
    "restricted|decrypt|fixedtpm|fixedparent|sensitivedataorigin|userwithauth|noda"
)


def reference_kdfa(digest: str, key: bytes, label: bytes, u: bytes, v: bytes, bits: int) -> bytes:
    """KDFa written out plainly from Part 1 §11.4.10.2, to cross-check the module's version."""
    size = (bits + 7) // 8
    out, counter = b"", 0
    while len(out) < size:
        counter += 1
        message = counter.to_bytes(4, "big") + label + b"\x00" + u + v + bits.to_bytes(4, "big")
        out += hmac.new(key, message, digest).digest()
    out = out[:size]
    if bits % 8:
        out = bytes([out[0] & ((1 << (bits % 8)) - 1)]) + out[1:]
    return out


def split_tpm2b(blob: bytes) -> list[bytes]:
    """Cut a run of TPM2B fields into its fields, each with its 2-byte size."""
    fields, offset = [], 0
    while offset < len(blob):
        size = struct.unpack(">H", blob[offset : offset + 2])[0]
        fields.append(blob[offset : offset + 2 + size])
        offset += 2 + size
    assert offset == len(blob)
    return fields


def rsa_storage_public(key: rsa.RSAPublicKey, attributes: int = SRK_ATTRIBUTES) -> bytes:
    """A TPM2B_PUBLIC like a TPM's RSA-2048 AES-128-CFB storage key, around a software key."""
    modulus = key.public_numbers().n.to_bytes(256, "big")
    area = (
        struct.pack(">HHIH", 0x0001, 0x000B, attributes, 0)
        + struct.pack(">HHHHHI", 0x0006, 128, 0x0043, 0x0010, 2048, 0)
        + struct.pack(">H", len(modulus))
        + modulus
    )
    return struct.pack(">H", len(area)) + area


@dataclass
class SoftTpm:
    """Just enough of a TPM, over software RSA keys, to undo an activation blob."""

    ek: rsa.RSAPrivateKey
    srk: rsa.RSAPrivateKey

    @staticmethod
    def unwrap(
        key: rsa.RSAPrivateKey, secret: bytes, label: bytes, wrapped: bytes, name: bytes
    ) -> bytes:
        seed = key.decrypt(
            secret[2:],
            padding.OAEP(mgf=padding.MGF1(hashes.SHA256()), algorithm=hashes.SHA256(), label=label),
        )
        integrity, ciphertext = wrapped[4:36], wrapped[36:]
        hmac_key = reference_kdfa("sha256", seed, b"INTEGRITY", b"", b"", 256)
        expected = hmac.new(hmac_key, ciphertext + name, "sha256").digest()
        assert hmac.compare_digest(integrity, expected), "outer integrity check failed"
        sym_key = reference_kdfa("sha256", seed, b"STORAGE", name, b"", 128)
        decryptor = Cipher(algorithms.AES(sym_key), CFB(bytes(16))).decryptor()
        return decryptor.update(ciphertext) + decryptor.finalize()

    def activate(self, blob: bytes, activate_name: bytes) -> tuple[bytes, bytes]:
        """ActivateCredential(object named `activate_name`, EK), then Import under the SRK."""
        id_object, identity_secret, private, duplicate_secret, public, _ = split_tpm2b(blob)
        identity = self.unwrap(self.ek, identity_secret, b"IDENTITY\0", id_object, activate_name)
        assert identity[:2] == b"\x00\x10"
        credential = identity[2:]
        object_name = b"\x00\x0b" + hashlib.sha256(public[2:]).digest()
        inner = self.unwrap(self.srk, duplicate_secret, b"DUPLICATE\0", private, object_name)
        decryptor = Cipher(algorithms.AES(credential), CFB(bytes(16))).decryptor()
        plain = decryptor.update(inner) + decryptor.finalize()
        assert plain[:2] == b"\x00\x20"
        inner_integrity, sensitive = plain[2:34], plain[34:]
        assert inner_integrity == hashlib.sha256(sensitive + object_name).digest()
        assert sensitive[:2] == struct.pack(">H", len(sensitive) - 2)
        assert sensitive[2:6] == bytes.fromhex("00080000")  # KEYEDHASH, empty authValue
        seed_value, key = sensitive[8:40], sensitive[42:]
        assert public[-32:] == hashlib.sha256(seed_value + key).digest()
        return credential, key


# --- a real software TPM ---------------------------------------------------------------------

TPM_BINARIES = ("swtpm", *TOOLS)
MISSING_BINARIES = [name for name in TPM_BINARIES if shutil.which(name) is None]


def _consecutive_free_ports() -> int:
    """A free loopback port P with P+1 free too: the swtpm TCTI finds the control port at P+1."""
    for _ in range(50):
        with socket.socket() as first:
            first.bind(("127.0.0.1", 0))
            port = int(first.getsockname()[1])
            if port >= 65535:
                continue
            with socket.socket() as second:
                try:
                    second.bind(("127.0.0.1", port + 1))
                except OSError:
                    continue
        return port
    raise RuntimeError("no two consecutive free loopback ports")


def _accepting(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.2):
            return True
    except OSError:
        return False


@dataclass
class SoftwareTpm:
    """A running swtpm, driven with tpm2-tools from `workdir`."""

    port: int
    workdir: Path

    def run(self, *args: str) -> bytes:
        env = {**os.environ, "TPM2TOOLS_TCTI": f"swtpm:host=127.0.0.1,port={self.port}"}
        done = subprocess.run(args, cwd=self.workdir, env=env, capture_output=True, timeout=60)
        assert done.returncode == 0, f"{' '.join(args)} failed:\n{done.stderr.decode()}"
        return done.stdout

    def flush_transient(self) -> None:
        # Without a resource manager, objects the tools load stay loaded; flush them between
        # steps, or the TPM soon runs out of object slots (TPM_RC_OBJECT_MEMORY).
        self.run("tpm2_flushcontext", "-t")


def _need_binaries(names: list[str]) -> None:
    """Skip where swtpm is not installed; in CI (which installs it) a missing binary fails."""
    if names:
        message = f"needs swtpm and tpm2-tools; missing: {', '.join(names)}"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)


def _run_swtpm(tmp_path: Path, state: Path) -> Iterator[int]:
    """Start swtpm on free loopback ports over `state`; yields its port, stops it after."""
    for _ in range(5):
        port = _consecutive_free_ports()
        process = subprocess.Popen(
            [
                "swtpm", "socket", "--tpm2",
                "--tpmstate", f"dir={state}",
                "--server", f"type=tcp,port={port},bindaddr=127.0.0.1",
                "--ctrl", f"type=tcp,port={port + 1},bindaddr=127.0.0.1",
                "--flags", "not-need-init,startup-clear",
                "--log", f"file={tmp_path / 'swtpm.log'}",
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )  # fmt: skip
        deadline = time.monotonic() + 10
        while process.poll() is None and not _accepting(port) and time.monotonic() < deadline:
            time.sleep(0.05)
        if process.poll() is None and _accepting(port):
            break
        process.kill()
        process.wait()  # it lost a race for the ports, or failed: try again
    else:
        pytest.fail("swtpm did not start")
    try:
        yield port
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


@pytest.fixture
def software_tpm(tmp_path: Path) -> Iterator[SoftwareTpm]:
    """A fresh swtpm on free loopback ports with its own state directory, stopped afterwards."""
    _need_binaries(MISSING_BINARIES)
    state = tmp_path / "state"
    state.mkdir()
    for port in _run_swtpm(tmp_path, state):
        yield SoftwareTpm(port, tmp_path)


@pytest.fixture
def provisioned_tpm(tmp_path: Path) -> Iterator[int]:
    """A fresh swtpm with its EK created by swtpm_setup, as a manufactured TPM has it (the
    Node SDK then reads the standard EK instead of making its own); yields its port."""
    _need_binaries([name for name in ("swtpm", "swtpm_setup") if shutil.which(name) is None])
    state = tmp_path / "provisioned"
    state.mkdir()
    subprocess.run(
        ["swtpm_setup", "--tpm2", "--tpmstate", str(state), "--createek", "--lock-nvram",
         "--overwrite"],
        check=True, capture_output=True, timeout=120,
    )  # fmt: skip
    yield from _run_swtpm(tmp_path, state)


class SoftTpmDevice:
    """A TPM device made of software keys: its registration body, and what it does with the
    challenge devprov answers (open the key inside, sign a token with it)."""

    def __init__(self) -> None:
        self.tpm = SoftTpm(
            rsa.generate_private_key(65537, 2048), rsa.generate_private_key(65537, 2048)
        )
        self.ek = rsa_storage_public(self.tpm.ek.public_key(), EK_ATTRIBUTES)
        self.srk = rsa_storage_public(self.tpm.srk.public_key())
        self.registration_id = registration_id_for(self.ek)

    def body(self) -> dict[str, Any]:
        return {
            "registrationId": self.registration_id,
            "tpm": {
                "endorsementKey": base64.b64encode(self.ek).decode(),
                "storageRootKey": base64.b64encode(self.srk).decode(),
            },
        }

    def open(self, blob_b64: str) -> bytes:
        """ActivateCredential + Import, as the TPM would: the key inside the blob."""
        _, key = self.tpm.activate(base64.b64decode(blob_b64), parse_public(self.srk).name)
        return key

    def signed_token(self, id_scope: str, key: bytes) -> str:
        resource = f"{id_scope}/registrations/{self.registration_id}"
        expiry = int(time.time()) + 3600
        signature = base64.b64encode(sign(key, resource, expiry)).decode()
        return f"SharedAccessSignature sr={resource}&sig={signature}&se={expiry}&skn=registration"
