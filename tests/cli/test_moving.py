"""`devprov export` and `devprov import`: out to a file and back in; in from a running DPS through
its service API (here another devprov, as Azure's would be), 10,000 enrollments, keys included."""

from __future__ import annotations

import base64
import json
import os
import secrets
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest

from tests.cli.test_commands import devprov, info, serving
from tests.conftest import PG_ADMIN, free_port

VOLATILE = {"etag", "createdDateTimeUtc", "lastUpdatedDateTimeUtc"}


def exported(data: str, out: Path) -> dict[tuple[str, str], dict[str, Any]]:
    """`devprov export`'s lines, by kind and id, without what a write renews."""
    ran = devprov("export", "--out", str(out), "--data-dir", data)
    assert "keep it as secret" in ran.stderr  # the keys warning
    records = {}
    for line in out.read_text().splitlines():
        item = json.loads(line)
        record = item["record"]
        record_id = next(
            record[name]
            for name in ("registrationId", "enrollmentGroupId", "hostName", "name")
            if name in record
        )
        records[item["kind"], record_id] = {k: v for k, v in record.items() if k not in VOLATILE}
    return records


def imported(*args: str) -> dict[str, dict[str, int]]:
    summary: dict[str, dict[str, int]] = json.loads(devprov("import", *args, "--json").stdout)
    return summary


def test_export_then_import_keeps_everything_and_twice_changes_nothing(
    tmp_path: Path, database_url: str
) -> None:
    old, new, certs = str(tmp_path / "old"), str(tmp_path / "new"), str(tmp_path / "certs")
    devprov("init", "--data-dir", old, "--db", database_url)
    devprov("init", "--data-dir", new)  # SQLite: moving between backends
    devprov("cert", "root", "fleet", "--out", certs)
    devprov("cert", "device", "dev-x", "--issuer", "fleet", "--out", certs)
    devprov("ca", "add", "fleet", "--cert", f"{certs}/fleet.pem", "--data-dir", old)
    code = devprov("ca", "code", "fleet", "--data-dir", old).stdout.strip()
    devprov("cert", "verification", code, "--issuer", "fleet", "--out", certs)
    devprov("ca", "verify", "fleet", "--cert", f"{certs}/verify-fleet.pem", "--data-dir", old)
    devprov("hub", "add", "hub-1.example", "--weight", "7", "--data-dir", old)
    devprov(
        "hub", "add", "web.example", "--connector", "http",
        "--connection-string", "Url=https://web.example/devices;Secret=s3cret-s3cret-s3cret",
        "--data-dir", old,
    )  # fmt: skip
    devprov(
        "group",
        "create",
        "x509",
        "--ca",
        "fleet",
        "--hub",
        "hub-1.example",
        "--allocation",
        "static",
        "--data-dir",
        old,
    )
    devprov("group", "create", "keys", "--webhook", "https://alloc.example/", "--data-dir", old)
    devprov("enrollment", "create", "dev-1", "--reprovision", "never", "--data-dir", old)
    devprov("enrollment", "create", "dev-x", "--cert", f"{certs}/dev-x.pem", "--data-dir", old)

    before = exported(old, tmp_path / "old.jsonl")
    assert len(before) == 7
    assert before["enrollment", "dev-1"]["attestation"]["symmetricKey"]["primaryKey"]
    assert before["linkedHub", "web.example"]["connectionString"].endswith(
        "Secret=s3cret-s3cret-s3cret"
    )
    assert before["ca", "fleet"]["properties"]["isVerified"] is True
    assert oct((tmp_path / "old.jsonl").stat().st_mode & 0o777) == "0o600"

    first = imported(str(tmp_path / "old.jsonl"), "--data-dir", new)
    assert first["created"] == {"ca": 1, "linkedHub": 2, "group": 2, "enrollment": 2}
    after = exported(new, tmp_path / "new.jsonl")
    assert after == before

    etags = (tmp_path / "new.jsonl").read_text()
    again = imported(str(tmp_path / "old.jsonl"), "--data-dir", new)
    assert again == {"created": {}, "updated": {}, "unchanged": first["created"]}
    exported(new, tmp_path / "new-again.jsonl")
    assert (tmp_path / "new-again.jsonl").read_text() == etags  # not even an etag renewed


def test_import_refuses_what_is_not_an_export(tmp_path: Path) -> None:
    devprov("init", "--data-dir", str(tmp_path / "data"))
    strange = tmp_path / "strange.jsonl"
    good = {"registrationId": "a", "attestation": {"type": "symmetricKey"}}
    strange.write_text(json.dumps({"kind": "enrollment", "record": good}) + "\nnonsense\n")
    refused = devprov("import", str(strange), "--data-dir", str(tmp_path / "data"), check=False)
    assert refused.returncode == 1
    assert f"{strange}:2 is not a devprov export line" in refused.stderr
    assert devprov("enrollment", "list", "--json", "--data-dir", str(tmp_path / "data")).stdout == (
        "[]\n"
    )  # not even the good line
    neither = devprov("import", "--data-dir", str(tmp_path / "data"), check=False)
    assert neither.returncode == 1 and "--from-dps" in neither.stderr


def test_import_from_a_dps_that_cannot_be_reached_or_named(tmp_path: Path) -> None:
    data = str(tmp_path / "data")
    devprov("init", "--data-dir", data)
    port = free_port()
    down = f"HostName=127.0.0.1:{port};SharedAccessKeyName=owner;SharedAccessKey=aGVsbG8="
    refused = devprov("import", "--from-dps", down, "--data-dir", data, check=False)
    assert refused.returncode == 1
    assert refused.stderr.startswith(f"error: cannot reach the DPS at https://127.0.0.1:{port}")
    assert refused.stderr.count("\n") == 1
    garbled = devprov("import", "--from-dps", "HostName=x", "--data-dir", data, check=False)
    assert garbled.returncode == 1 and "lacks" in garbled.stderr


@pytest.fixture
def postgresql_url() -> Iterator[str]:
    name = f"devprov_test_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(PG_ADMIN, autocommit=True) as admin:
        admin.execute(f'CREATE DATABASE "{name}"')
    base, _, query = PG_ADMIN.partition("?")
    yield f"{base.rsplit('/', 1)[0]}/{name}" + (f"?{query}" if query else "")
    with psycopg.connect(PG_ADMIN, autocommit=True) as admin:
        admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


ENROLLMENTS = int(os.environ.get("DEVPROV_IMPORT_ENROLLMENTS", "10000"))


def test_from_a_running_dps_ten_thousand_enrollments_with_their_keys(
    tmp_path: Path, postgresql_url: str
) -> None:
    """The old DPS (SQLite) serves its service API; the new one (PostgreSQL) imports from it
    with nothing but its service connection string, and a device registers there with the key
    it had at the old one."""
    seed = tmp_path / "seed.jsonl"
    keys = {}
    with seed.open("w") as handle:
        for group in ("fleet-a", "fleet-b"):
            attestation = {"type": "symmetricKey", "symmetricKey": {}}
            record = {"enrollmentGroupId": group, "attestation": attestation}
            handle.write(json.dumps({"kind": "group", "record": record}) + "\n")
        for number in range(ENROLLMENTS):
            registration_id = f"dev-{number:05d}"
            keys[registration_id] = base64.b64encode(secrets.token_bytes(32)).decode()
            attestation = {
                "type": "symmetricKey",
                "symmetricKey": {
                    "primaryKey": keys[registration_id],
                    "secondaryKey": base64.b64encode(secrets.token_bytes(32)).decode(),
                },
            }
            record = {"registrationId": registration_id, "attestation": attestation}
            if number % 2:
                record["initialTwin"] = {"tags": {"number": number}}
            handle.write(json.dumps({"kind": "enrollment", "record": record}) + "\n")
    old_db = f"sqlite:///{tmp_path / 'old.db'}"
    with serving(tmp_path / "old", old_db) as old:
        seeded = imported(str(seed), "--data-dir", str(old))
        assert seeded["created"] == {"group": 2, "enrollment": ENROLLMENTS}
        details = info(old)
        source = ["--from-dps", details["serviceConnectionString"]]
        source += ["--ca", details["caCertificatePath"]]

        with serving(tmp_path / "new", postgresql_url, "--default-hub", "127.0.0.1") as new:
            first = imported(*source, "--data-dir", str(new))
            assert first == {
                "created": {"group": 2, "enrollment": ENROLLMENTS},
                "updated": {},
                "unchanged": {},
            }
            again = imported(*source, "--data-dir", str(new))
            assert again == {"created": {}, "updated": {}, "unchanged": first["created"]}

            was = exported(str(old), tmp_path / "old.jsonl")
            now = exported(str(new), tmp_path / "new.jsonl")
            assert {key: record for key, record in now.items() if key[0] != "linkedHub"} == was

            registered = devprov(
                "device", "register", "dev-00042", "--key", keys["dev-00042"],
                "--data-dir", str(new),
            )  # fmt: skip
            assert json.loads(registered.stdout)["assignedHub"] == "127.0.0.1"
