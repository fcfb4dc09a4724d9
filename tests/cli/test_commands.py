"""The `devprov` command as an operator runs it: serve, info, hub add, device register.

Commands run in-process (typer's runner) except `serve`, which runs as the process it is.
"""

from __future__ import annotations

import asyncio
import base64
import json
import socket
import ssl
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from typer.testing import CliRunner

from devprov.bench.wire import MqttClient
from devprov.cli import app
from devprov.domain.keys import derive_device_key
from devprov.protocol import mqtt
from tests.conftest import free_port
from tests.helpers import device_token


@dataclass(frozen=True)
class Ran:
    returncode: int
    stdout: str
    stderr: str


def devprov(*args: str, check: bool = True) -> Ran:
    result = CliRunner().invoke(app, list(args))
    ran = Ran(result.exit_code, result.stdout, result.stderr)
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        raise result.exception
    if check and ran.returncode != 0:
        raise AssertionError(f"devprov {' '.join(args)} exited {ran.returncode}: {ran.stderr}")
    return ran


def info(data_dir: Path) -> dict[str, Any]:
    details: dict[str, Any] = json.loads(
        devprov("info", "--data-dir", str(data_dir), "--json").stdout
    )
    return details


@contextmanager
def serving(data_dir: Path, database_url: str, *extra: str) -> Iterator[Path]:
    """`devprov serve` as a process of its own, on free ports."""
    port = free_port()
    log = data_dir.parent / f"{data_dir.name}-serve.log"
    server = subprocess.Popen(
        [
            sys.executable, "-m", "devprov.cli", "serve",
            "--data-dir", str(data_dir),
            "--host", "127.0.0.1",
            "--https-port", str(port),
            "--mqtt-port", str(free_port()),
            "--amqp-port", str(free_port()),
            "--db", database_url,
            *extra,
        ],
        stdout=subprocess.DEVNULL,
        stderr=log.open("w"),  # a file: a pipe nobody reads would fill and stop the server
        text=True,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            assert server.poll() is None, log.read_text()
            try:
                with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                    break
            except OSError:
                time.sleep(0.1)
        yield data_dir
    finally:
        server.terminate()
        server.wait(timeout=10)


@pytest.fixture
def served(tmp_path: Path, database_url: str) -> Iterator[Path]:
    with serving(tmp_path / "data", database_url) as data_dir:
        yield data_dir


def test_info_tells_a_client_everything_it_needs(served: Path, database_url: str) -> None:
    details = info(served)
    assert details["idScope"].startswith("0ne") and len(details["idScope"]) == 11
    assert details["hostName"] == "127.0.0.1"
    assert details["mqttPort"] != details["httpsPort"]
    assert details["serviceConnectionString"].startswith(
        f"HostName=127.0.0.1:{details['httpsPort']};SharedAccessKeyName=provisioningserviceowner;"
    )
    assert Path(details["caCertificatePath"]).read_text().startswith("-----BEGIN CERTIFICATE")
    assert details["linkedHubs"] == []
    assert details["database"] == database_url


def test_hub_added_while_serving_applies_to_the_next_registration(served: Path) -> None:
    group = json.loads(devprov("group", "create", "fleet", "--data-dir", str(served)).stdout)
    group_key = group["attestation"]["symmetricKey"]["primaryKey"]
    refused = devprov(
        "device", "register", "dev-1", "--group-key", group_key, "--data-dir", str(served),
        check=False,
    )  # fmt: skip
    assert refused.returncode == 1
    assert "400208" in refused.stdout
    assert refused.stderr.startswith("registration failed: 400208: ")  # not "HTTP 200"

    devprov("hub", "add", "late-hub.example", "--data-dir", str(served))
    assert info(served)["linkedHubs"] == ["late-hub.example"]

    registered = devprov(
        "device", "register", "dev-1", "--group-key", group_key,
        "--payload", '{"modelId": "dtmi:x;1"}', "--data-dir", str(served),
    )  # fmt: skip
    state = json.loads(registered.stdout)
    assert state["assignedHub"] == "late-hub.example"
    assert state["status"] == "assigned"
    record = json.loads(devprov("registration", "show", "dev-1", "--data-dir", str(served)).stdout)
    assert record["assignedHub"] == "late-hub.example"
    devices = json.loads(
        devprov("hub", "devices", "late-hub.example", "--json", "--data-dir", str(served)).stdout
    )
    assert [device["deviceId"] for device in devices] == ["dev-1"]


def test_errors_are_clear_and_exit_nonzero(tmp_path: Path) -> None:
    devprov("init", "--data-dir", str(tmp_path))
    result = devprov("enrollment", "show", "ghost", "--data-dir", str(tmp_path), check=False)
    assert result.returncode == 1
    assert "404201" in result.stderr and "'ghost' does not exist" in result.stderr


def test_ca_proof_of_possession_and_x509_enrollments(tmp_path: Path) -> None:
    data, certs = str(tmp_path / "data"), str(tmp_path / "certs")
    devprov("init", "--data-dir", data)
    devprov("cert", "root", "fleet", "--out", certs)
    devprov("cert", "intermediate", "line", "--issuer", "fleet", "--out", certs)
    devprov("cert", "device", "dev-9", "--issuer", "line", "--out", certs)
    devprov("ca", "add", "fleet", "--cert", f"{certs}/fleet.pem", "--data-dir", data)
    assert "NOT verified" in devprov("ca", "list", "--data-dir", data).stdout

    code = devprov("ca", "code", "fleet", "--data-dir", data).stdout.strip()
    devprov("cert", "verification", code, "--issuer", "line", "--out", certs)
    wrong_signer = devprov(
        "ca", "verify", "fleet", "--cert", f"{certs}/verify-line.pem", "--data-dir", data,
        check=False,
    )  # fmt: skip
    assert wrong_signer.returncode == 1
    assert "400010" in wrong_signer.stderr and "not signed by the CA" in wrong_signer.stderr
    devprov("cert", "verification", code, "--issuer", "fleet", "--out", certs)
    devprov("ca", "verify", "fleet", "--cert", f"{certs}/verify-fleet.pem", "--data-dir", data)
    listed = json.loads(devprov("ca", "list", "--json", "--data-dir", data).stdout)
    assert [(ca["name"], ca["properties"]["isVerified"]) for ca in listed] == [("fleet", True)]

    group = json.loads(devprov("group", "create", "g", "--ca", "fleet", "--data-dir", data).stdout)
    assert group["attestation"]["x509"]["caReferences"] == {"primary": "fleet"}
    enrollment = json.loads(
        devprov(
            "enrollment", "create", "dev-9", "--cert", f"{certs}/dev-9.pem", "--data-dir", data
        ).stdout
    )
    info = enrollment["attestation"]["x509"]["clientCertificates"]["primary"]["info"]
    assert info["subjectName"] == "CN=dev-9"
    assert info["issuerName"] == "CN=line intermediate CA"


def test_tpm_enrollment_takes_its_registration_id_from_the_ek(tmp_path: Path) -> None:
    from tests.attestation.test_tpm import REAL_EK, REAL_EK_REGISTRATION_ID

    ek = base64.b64encode(REAL_EK).decode()
    devprov("init", "--data-dir", str(tmp_path))
    created = json.loads(
        devprov("enrollment", "create", "--tpm-ek", ek, "--data-dir", str(tmp_path)).stdout
    )
    assert created["registrationId"] == REAL_EK_REGISTRATION_ID
    assert created["attestation"]["tpm"]["endorsementKey"] == ek


def test_commands_other_than_serve_and_init_never_create_a_store(tmp_path: Path) -> None:
    elsewhere = tmp_path / "not-a-data-dir"
    result = devprov("group", "create", "lost", "--data-dir", str(elsewhere), check=False)
    assert result.returncode == 1
    assert result.stderr.count("\n") == 1, result.stderr  # one line, no traceback
    assert f"no devprov data dir at {elsewhere}" in result.stderr
    assert "devprov init" in result.stderr
    assert not elsewhere.exists()


def test_a_store_behind_the_schema_is_told_to_upgrade_not_migrated(tmp_path: Path) -> None:
    from alembic import command

    from devprov.instance import ensure_instance
    from devprov.store.schema import _config, current_revision

    database = f"sqlite:///{tmp_path / 'old.db'}"
    ensure_instance(tmp_path / "data", database=database)
    engine = sa.create_engine(database)
    with engine.begin() as connection:
        command.upgrade(_config(connection), "0004")
    engine.dispose()

    refused = devprov("hub", "list", "--data-dir", str(tmp_path / "data"), check=False)
    assert refused.returncode == 1
    assert "devprov db upgrade" in refused.stderr
    assert current_revision(database) == "0004"  # looking changed nothing

    devprov("db", "upgrade", "--data-dir", str(tmp_path / "data"))
    listed = devprov("hub", "list", "--json", "--data-dir", str(tmp_path / "data")).stdout
    assert json.loads(listed) == []


def test_make_runs_default_hub_takes_a_device_with_no_set_up(
    tmp_path: Path, database_url: str
) -> None:
    """`make run` links a built-in hub named 127.0.0.1: a device provisions and connects to it
    with nothing set up beyond a group."""
    with serving(tmp_path / "data", database_url, "--default-hub", "127.0.0.1") as data_dir:
        details = info(data_dir)
        assert details["linkedHubs"] == ["127.0.0.1"]
        group = json.loads(devprov("group", "create", "fleet", "--data-dir", str(data_dir)).stdout)
        group_key = group["attestation"]["symmetricKey"]["primaryKey"]
        registered = devprov(
            "device", "register", "dev-1", "--group-key", group_key, "--data-dir", str(data_dir)
        )
        assert json.loads(registered.stdout)["assignedHub"] == "127.0.0.1"
        shown = json.loads(
            devprov("hub", "show", "127.0.0.1", "--json", "--data-dir", str(data_dir)).stdout
        )
        assert shown["connectionString"].startswith("HostName=127.0.0.1;SharedAccessKeyName=")

        twin = asyncio.run(hub_twin(details, derive_device_key(group_key, "dev-1")))
        assert twin == {"desired": {"$version": 1}, "reported": {"$version": 1}}


async def hub_twin(details: dict[str, Any], key: str) -> Any:
    """Connect to the hub 127.0.0.1 as dev-1 (verifying its certificate names 127.0.0.1) and
    read the twin."""
    context = ssl.create_default_context(cafile=details["caCertificatePath"])
    reader, writer = await asyncio.open_connection(
        "127.0.0.1", details["mqttPort"], ssl=context, server_hostname="127.0.0.1"
    )
    client = MqttClient(reader, writer)
    token = device_token("127.0.0.1/devices/dev-1", key, style="python")
    client.send(mqtt.Connect("dev-1", "127.0.0.1/dev-1/?api-version=2021-04-12", token.encode()))
    assert await client.packet() == mqtt.ConnAck(mqtt.ACCEPTED)
    client.send(mqtt.Publish("$iothub/twin/GET/?$rid=1", b" "))
    answer = await client.packet()
    writer.close()
    assert isinstance(answer, mqtt.Publish)
    return json.loads(answer.payload)
