"""`devprov credential-policy`: an issuing CA made, kept in the data dir, shown, rotated."""

from __future__ import annotations

import json
import stat
from pathlib import Path

from cryptography import x509

from tests.cli.test_commands import devprov
from tests.cli.test_commands import served as served  # the fixture


def test_create_keeps_the_key_in_the_data_dir_only(tmp_path: Path) -> None:
    data = str(tmp_path / "data")
    devprov("init", "--data-dir", data)

    created = json.loads(
        devprov(
            "credential-policy", "create", "line-1", "--days", "5", "--data-dir", data, "--json"
        ).stdout
    )
    duplicate = devprov("credential-policy", "create", "line-1", "--data-dir", data, check=False)
    pem = devprov("credential-policy", "show", "line-1", "--pem", "--data-dir", data).stdout

    assert created["validityDays"] == 5
    assert created["extendedKeyUsages"] == ["clientAuth"]
    [ca] = x509.load_pem_x509_certificates(pem.encode())
    assert ca.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
    keys = list((tmp_path / "data" / "credential-policies" / "line-1").iterdir())
    assert len(keys) == 1
    assert stat.S_IMODE(keys[0].stat().st_mode) == 0o600
    assert stat.S_IMODE((tmp_path / "data" / "credential-policies").stat().st_mode) == 0o700
    assert "PRIVATE KEY" not in json.dumps(created)
    assert duplicate.returncode == 1 and "409201" in duplicate.stderr


def test_rotate_list_and_remove(tmp_path: Path) -> None:
    data = str(tmp_path / "data")
    devprov("init", "--data-dir", data)
    devprov("credential-policy", "create", "line-2", "--data-dir", data)

    devprov("credential-policy", "rotate", "line-2", "--data-dir", data)
    pem = devprov("credential-policy", "show", "line-2", "--pem", "--data-dir", data).stdout
    listed = json.loads(devprov("credential-policy", "list", "--json", "--data-dir", data).stdout)
    table = devprov("credential-policy", "list", "--data-dir", data).stdout
    devprov("credential-policy", "remove", "line-2", "--data-dir", data)
    gone = devprov("credential-policy", "show", "line-2", "--data-dir", data, check=False)

    assert len(x509.load_pem_x509_certificates(pem.encode())) == 2  # the old CA stays trusted
    assert [(policy["name"], policy["validityDays"]) for policy in listed] == [("line-2", 30)]
    assert len(listed[0]["issuingCas"]) == 2 and "line-2" in table
    assert gone.returncode == 1 and "no credential policy named 'line-2'" in gone.stderr


def test_a_device_gets_a_certificate_from_the_command_line(served: Path, tmp_path: Path) -> None:
    data = str(served)
    devprov("hub", "add", "hub.example", "--data-dir", data)
    devprov("credential-policy", "create", "cli-certs", "--data-dir", data)
    group = json.loads(
        devprov(
            "group", "create", "certified", "--credential-policy", "cli-certs", "--data-dir", data
        ).stdout
    )
    out = tmp_path / "device"

    registered = devprov(
        "device", "register", "dev-7", "--group-key",
        group["attestation"]["symmetricKey"]["primaryKey"], "--new-certificate", str(out),
        "--data-dir", data,
    )  # fmt: skip

    state = json.loads(registered.stdout)
    assert len(state["issuedCertificateChain"]) == 2
    leaf, ca = x509.load_pem_x509_certificates((out / "dev-7-chain.pem").read_bytes())
    assert leaf.subject.rfc4514_string() == "CN=dev-7"
    leaf.verify_directly_issued_by(ca)
    assert stat.S_IMODE((out / "dev-7-key.pem").stat().st_mode) == 0o600
