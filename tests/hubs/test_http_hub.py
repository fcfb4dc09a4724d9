"""The http connector against a real receiver process: the example back end the docs show
(examples/http_hub_receiver.py), which checks every signature and keeps identities in a file."""

from __future__ import annotations

import asyncio
import json
import sys
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest
from azure.iot.device import ProvisioningDeviceClient
from typer.testing import CliRunner

from devprov.cli import app
from tests.conftest import Running, fixed_ports, free_port, start_devprov
from tests.helpers import create_enrollment, primary_key, register
from tests.hubs.services import REPO, Service

HUB = "things.devprov.test"
BUILTIN_HUB = "hub-1.devprov.test"
SECRET = "a-long-random-secret-for-tests"
TWIN = {"tags": {"site": "lab"}, "properties": {"desired": {"interval": 30}}}
TIMEOUT = 3.0


class Receiver:
    def __init__(self, service: Service, port: int, store: Path) -> None:
        self.service = service
        self.store = store
        self.url = f"http://127.0.0.1:{port}/devprov"

    def connection_string(self, secret: str = SECRET) -> str:
        return f"Url={self.url};Secret={secret}"

    def devices(self) -> dict[str, Any]:
        held: dict[str, Any] = json.loads(self.store.read_text()) if self.store.exists() else {}
        devices: dict[str, Any] = held.get(HUB, {})
        return devices


@pytest.fixture(scope="module")
def receiver(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Receiver]:
    home = tmp_path_factory.mktemp("receiver")
    port = free_port()
    argv = [
        sys.executable, str(REPO / "examples" / "http_hub_receiver.py"),
        "--port", str(port), "--store", str(home / "devices.json"),
    ]  # fmt: skip
    service = Service(
        "receiver", argv, ("127.0.0.1", port), home, env={"DEVPROV_HUB_SECRET": SECRET}
    )
    service.start()
    try:
        yield Receiver(service, port, home / "devices.json")
    finally:
        service.stop()


@pytest.fixture
async def dps(tmp_path: Path, receiver: Receiver) -> AsyncIterator[Running]:
    running = await start_devprov(
        tmp_path / "dps",
        f"sqlite:///{tmp_path / 'dps.db'}",
        hub_connector_timeout=TIMEOUT,
        fast_path_seconds=30,
    )
    try:
        await running.service().link_hub(
            HUB, connector="http", connectionString=receiver.connection_string()
        )
        yield running
    finally:
        await running.devprov.close()


@fixed_ports
async def test_an_sdk_device_is_posted_with_its_keys_capabilities_and_twin(
    dps: Running, receiver: Receiver
) -> None:
    enrollment = await create_enrollment(
        dps, "http-1", initialTwin=TWIN, capabilities={"iotEdge": True}
    )

    def provision() -> Any:
        return ProvisioningDeviceClient.create_from_symmetric_key(
            provisioning_host="localhost",
            registration_id="http-1",
            id_scope=dps.id_scope,
            symmetric_key=primary_key(enrollment),
            server_verification_cert=Path(dps.ca).read_text(),
        ).register()

    result = await asyncio.to_thread(provision)

    assert (result.status, result.registration_state.assigned_hub) == ("assigned", HUB)
    identity = receiver.devices()["http-1"]
    assert identity["action"] == "upsert" and identity["registrationId"] == "http-1"
    assert identity["authentication"]["symmetricKey"]["primaryKey"] == primary_key(enrollment)
    assert identity["capabilities"] == {"iotEdge": True}
    assert identity["initialTwin"] == TWIN


async def test_a_device_that_moves_away_is_deleted_there(dps: Running, receiver: Receiver) -> None:
    await dps.service().link_hub(BUILTIN_HUB)
    enrollment = await create_enrollment(dps, "http-mover", iotHubs=[HUB],
                                         allocationPolicy="static")  # fmt: skip
    key = primary_key(enrollment)
    assert (await register(dps, "http-mover", key))[1]["status"] == "assigned"
    assert "http-mover" in receiver.devices()

    await create_enrollment(
        dps, "http-mover",
        attestation={"type": "symmetricKey", "symmetricKey": {"primaryKey": key}},
        iotHubs=[BUILTIN_HUB], allocationPolicy="static",
    )  # fmt: skip
    _, body, _ = await register(dps, "http-mover", key)

    assert body["registrationState"]["assignedHub"] == BUILTIN_HUB, body
    assert "http-mover" not in receiver.devices()


async def failed_with_400213(dps: Running, registration_id: str, key: str, words: str) -> None:
    status, body, _ = await register(dps, registration_id, key)
    assert (status, body["status"]) == (200, "failed"), body
    state = body["registrationState"]
    assert state["errorCode"] == 400213, state
    assert HUB in state["errorMessage"] and words in state["errorMessage"], state
    assert SECRET not in state["errorMessage"] and "/devprov" not in state["errorMessage"]
    record = await dps.service().get_registration(registration_id)
    assert (record["status"], record["errorCode"]) == ("failed", 400213)
    assert "assignedHub" not in record


async def test_a_receiver_that_hangs_is_down_or_refuses_fails_the_registration(
    dps: Running, receiver: Receiver
) -> None:
    keys = {n: primary_key(await create_enrollment(dps, n)) for n in ("h1", "h2", "h3", "h4")}
    assert (await register(dps, "h1", keys["h1"]))[1]["status"] == "assigned"

    receiver.service.freeze()
    try:
        await failed_with_400213(dps, "h2", keys["h2"], f"did not answer within {TIMEOUT:g} s")
    finally:
        receiver.service.thaw()
    await asyncio.to_thread(receiver.service.stop)
    try:
        await failed_with_400213(dps, "h3", keys["h3"], "cannot connect to HTTP back end")
    finally:
        await asyncio.to_thread(receiver.service.start)
    assert "h3" not in receiver.devices()

    await dps.service().link_hub(
        HUB, connector="http", connectionString=receiver.connection_string("x" * 32)
    )
    await failed_with_400213(dps, "h4", keys["h4"], "answered 401")
    assert "h4" not in receiver.devices() and "h1" in receiver.devices()


async def test_check_tells_a_wrong_secret(dps: Running, receiver: Receiver) -> None:
    arguments = ["hub", "check", HUB, "--data-dir", str(dps.data_dir)]
    checked = await asyncio.to_thread(CliRunner().invoke, app, arguments)
    assert checked.exit_code == 0 and "✓" in checked.stdout, checked.output

    await dps.service().link_hub(
        HUB, connector="http", connectionString=receiver.connection_string("y" * 32)
    )
    checked = await asyncio.to_thread(CliRunner().invoke, app, arguments)

    assert checked.exit_code == 1
    assert "refused the signature" in checked.stdout and "y" * 32 not in checked.stdout


@pytest.mark.parametrize(
    ("connector", "text"),
    [
        ("azure-iothub", "HostName=things.devprov.test;SharedAccessKey=c2VjcmV0LXZhbHVl"),
        ("mosquitto", "mqtt://admin:secret-value@"),
        ("http", "Url=https://things.example;Secret=secret-value"),
        ("kafka", "secret-value"),
    ],
)
async def test_an_unusable_connection_string_is_refused_when_linked(
    dps: Running, connector: str, text: str
) -> None:
    status, body, _ = await dps.service().request(
        "PUT", f"/linkedHubs/{HUB}", {"connector": connector, "connectionString": text}
    )

    assert (status, body["errorCode"]) == (400, 400004), body
    field = "connector:" if connector == "kafka" else "connectionString:"
    assert body["message"].startswith(field), body
    assert "secret-value" not in body["message"] and "c2VjcmV0LXZhbHVl" not in body["message"]
    listed = await dps.service().call("GET", "/linkedHubs")
    assert all("connectionString" not in hub for hub in listed)
