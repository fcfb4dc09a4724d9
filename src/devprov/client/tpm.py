"""A device's TPM, driven with tpm2-tools: its endorsement and storage root keys, and the SAS
signature made inside it with the key DPS's activation blob carries (docs: the DPS device
protocol, TPM attestation). Works with any TPM tpm2-tools reach (`TPM2TOOLS_TCTI`), e.g. swtpm."""

from __future__ import annotations

import os
import shutil
import struct
import subprocess
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

SRK_TEMPLATE_ATTRIBUTES = (
    "restricted|decrypt|fixedtpm|fixedparent|sensitivedataorigin|userwithauth|noda"
)
TOOLS = (
    "tpm2_createek",
    "tpm2_createprimary",
    "tpm2_readpublic",
    "tpm2_flushcontext",
    "tpm2_startauthsession",
    "tpm2_policysecret",
    "tpm2_activatecredential",
    "tpm2_import",
    "tpm2_load",
    "tpm2_hmac",
)


class TpmUnavailable(Exception):
    """tpm2-tools are missing, or the TPM did not do what was asked."""


def _split_tpm2b(blob: bytes) -> list[bytes]:
    fields, offset = [], 0
    while offset + 2 <= len(blob):
        size = struct.unpack(">H", blob[offset : offset + 2])[0]
        fields.append(blob[offset : offset + 2 + size])
        offset += 2 + size
    if offset != len(blob) or len(fields) < 5:
        raise TpmUnavailable("the activation blob DPS sent is not a run of TPM2B fields")
    return fields


@dataclass
class TpmDevice:
    """The TPM at `tcti` (tpm2-tools' TCTI string, e.g. swtpm:host=127.0.0.1,port=2321)."""

    tcti: str | None = None
    workdir: Path = field(default_factory=lambda: Path(tempfile.mkdtemp(prefix="devprov-tpm-")))

    def __post_init__(self) -> None:
        missing = [tool for tool in TOOLS if shutil.which(tool) is None]
        if missing:
            raise TpmUnavailable(f"tpm2-tools are needed (missing {', '.join(missing)})")

    def _run(self, *args: str) -> None:
        env = dict(os.environ)
        if self.tcti:
            env["TPM2TOOLS_TCTI"] = self.tcti
        done = subprocess.run(args, cwd=self.workdir, env=env, capture_output=True, timeout=60)
        if done.returncode != 0:
            problem = done.stderr.decode(errors="replace").strip().splitlines()
            raise TpmUnavailable(f"{args[0]} failed: {problem[-1] if problem else done.returncode}")
        if args[0] != "tpm2_flushcontext":  # without a resource manager, loaded objects stay
            self._run("tpm2_flushcontext", "-t")

    def public_keys(self) -> tuple[bytes, bytes]:
        """The endorsement key and a storage root key (TPM2B_PUBLIC each), made in the TPM."""
        self._run("tpm2_createek", "-c", "ek.ctx", "-G", "rsa", "-u", "ek.pub")
        self._run(
            "tpm2_createprimary", "-C", "o", "-g", "sha256", "-G", "rsa2048:aes128cfb",
            "-a", SRK_TEMPLATE_ATTRIBUTES, "-c", "srk.ctx",
        )  # fmt: skip
        self._run("tpm2_readpublic", "-c", "srk.ctx", "-o", "srk.pub")
        return (self.workdir / "ek.pub").read_bytes(), (self.workdir / "srk.pub").read_bytes()

    def activate(self, blob: bytes) -> None:
        """Open DPS's activation blob: ActivateCredential with the EK, then import and load
        the HMAC key it carries under the SRK."""
        id_object, identity_secret, private, duplicate_secret, public, *_ = _split_tpm2b(blob)
        work = self.workdir
        magic = struct.pack(">II", 0xBADCC0DE, 1)  # tpm2-tools' credential file header
        (work / "cred.in").write_bytes(magic + id_object + identity_secret)
        (work / "dup.priv").write_bytes(private)
        (work / "dup.seed").write_bytes(duplicate_secret)
        (work / "dup.pub").write_bytes(public)
        self._run("tpm2_startauthsession", "--policy-session", "-S", "session.ctx")
        self._run("tpm2_policysecret", "-S", "session.ctx", "-c", "e")
        self._run(
            "tpm2_activatecredential", "-c", "srk.ctx", "-C", "ek.ctx",
            "-i", "cred.in", "-o", "cred.out", "-P", "session:session.ctx",
        )  # fmt: skip
        self._run("tpm2_flushcontext", "session.ctx")
        self._run(
            "tpm2_import", "-C", "srk.ctx", "-u", "dup.pub", "-i", "dup.priv",
            "-s", "dup.seed", "-k", "cred.out", "-r", "imported.priv",
        )  # fmt: skip

    def hmac(self, data: bytes) -> bytes:
        """HMAC-SHA256 of `data` with the activated key, inside the TPM."""
        (self.workdir / "data.bin").write_bytes(data)
        self._run(
            "tpm2_load", "-C", "srk.ctx", "-u", "dup.pub", "-r", "imported.priv",
            "-c", "idkey.ctx",
        )  # fmt: skip
        self._run("tpm2_hmac", "-c", "idkey.ctx", "-g", "sha256", "-o", "hmac.out", "data.bin")
        return (self.workdir / "hmac.out").read_bytes()

    def close(self) -> None:
        shutil.rmtree(self.workdir, ignore_errors=True)
