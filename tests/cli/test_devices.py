"""`devprov device register` with each attestation the README shows: a group's symmetric key
(tests/cli/test_commands.py), an X.509 certificate, and a TPM (swtpm, driven by tpm2-tools)."""

from __future__ import annotations

import base64
import json
from pathlib import Path

from tests.cli.test_commands import devprov, serving
from tests.tpm_support import SoftwareTpm


def test_an_x509_device_registers_with_its_certificate(tmp_path: Path, database_url: str) -> None:
    certs, data = str(tmp_path / "certs"), str(tmp_path / "data")
    # Set up before serving: certificates stored while it runs are trusted by its TLS within a
    # second (docs/behaviour.md), which a test must not race.
    devprov("init", "--data-dir", data, "--db", database_url)
    devprov("cert", "root", "fleet", "--out", certs)
    devprov("cert", "intermediate", "line1", "--issuer", "fleet", "--out", certs)
    devprov("cert", "device", "dev-2", "--issuer", "line1", "--out", certs)
    devprov("ca", "add", "fleet", "--cert", f"{certs}/fleet.pem", "--data-dir", data)
    code = devprov("ca", "code", "fleet", "--data-dir", data).stdout.strip()
    devprov("cert", "verification", code, "--issuer", "fleet", "--out", certs)
    devprov("ca", "verify", "fleet", "--cert", f"{certs}/verify-fleet.pem", "--data-dir", data)
    devprov("group", "create", "x509-fleet", "--ca", "fleet", "--data-dir", data)
    with serving(tmp_path / "data", database_url, "--default-hub", "127.0.0.1"):
        registered = devprov(
            "device", "register", "dev-2", "--cert", f"{certs}/dev-2-chain.pem",
            "--cert-key", f"{certs}/dev-2-key.pem", "--data-dir", data,
        )  # fmt: skip
        state = json.loads(registered.stdout)
        assert (state["status"], state["assignedHub"]) == ("assigned", "127.0.0.1")
        record = json.loads(devprov("registration", "show", "dev-2", "--data-dir", data).stdout)
        assert record["x509"]["enrollmentGroupId"] == "x509-fleet"

        stranger = tmp_path / "stranger"
        devprov("cert", "device", "dev-3", "--out", str(stranger))  # self-signed: no CA of ours
        refused = devprov(
            "device", "register", "dev-3", "--cert", f"{stranger}/dev-3-chain.pem",
            "--cert-key", f"{stranger}/dev-3-key.pem", "--data-dir", data, check=False,
        )  # fmt: skip
        assert refused.returncode == 1
        assert "closed the connection" in refused.stderr and "devprov ca list" in refused.stderr

        untrusting = devprov(
            "device", "register", "dev-2", "--cert", f"{certs}/dev-2-chain.pem",
            "--cert-key", f"{certs}/dev-2-key.pem", "--ca", f"{certs}/fleet.pem",
            "--data-dir", data, check=False,
        )  # fmt: skip
        assert untrusting.returncode == 1
        assert "is not trusted" in untrusting.stderr and "--ca" in untrusting.stderr


def test_a_tpm_device_registers_with_its_tpm(
    tmp_path: Path, database_url: str, software_tpm: SoftwareTpm
) -> None:
    from devprov.client.tpm import TpmDevice

    tcti = f"swtpm:host=127.0.0.1,port={software_tpm.port}"
    tpm = TpmDevice(tcti)
    ek = base64.b64encode(tpm.public_keys()[0]).decode()  # what a maker ships with the device
    tpm.close()
    with serving(tmp_path / "data", database_url, "--default-hub", "127.0.0.1") as data_dir:
        data = str(data_dir)
        enrolled = json.loads(
            devprov("enrollment", "create", "--tpm-ek", ek, "--data-dir", data).stdout
        )
        registered = devprov(
            "device", "register", "-", "--tpm", "--tpm-tcti", tcti, "--data-dir", data
        )
        state = json.loads(registered.stdout)
        assert state["registrationId"] == enrolled["registrationId"]
        assert (state["status"], state["assignedHub"]) == ("assigned", "127.0.0.1")
        assert state["tpm"]["authenticationKey"]  # the hub key, for the TPM to import
