"""The azure-iothub connector against a real IoT Hub REST API: a second devprov's built-in hub.

The "cloud" devprov runs as its own process on 127.0.0.2 (tests/interop/hosts names it
cloud.devprov.test), serving IoT Hub's registry and twin REST API, which the official
`azure-iot-hub` SDK validates in tests/interop. The devprov under test links it with connector
`azure-iothub` and its iothubowner connection string, and trusts its CA through SSL_CERT_FILE, as
any OpenSSL client would. Official SDKs provision devices through it and then connect to the
cloud hub with what they were given; `azure-iot-hub` reads what the connector wrote.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest
from azure.iot.device import X509, IoTHubDeviceClient, Message, ProvisioningDeviceClient
from azure.iot.hub.models import Twin, TwinProperties
from cryptography.hazmat.primitives.hashes import SHA256
from msrest.exceptions import HttpOperationError
from typer.testing import CliRunner

from devprov.cli import app
from devprov.domain.keys import generate_key
from tests.conftest import Running, fixed_ports, start_devprov
from tests.helpers import create_enrollment, primary_key, register
from tests.hubs.services import CLOUD_HUB, Service, cloud_connection_string, cloud_devprov
from tests.interop.hub_sdks import python_registry
from tests.x509_fixtures import individual_x509

pytestmark = fixed_ports
BUILTIN_HUB = "hub-1.devprov.test"
TWIN = {"tags": {"site": "lab"}, "properties": {"desired": {"interval": 30}}}
TIMEOUT = 3.0


class Cloud:
    """The cloud devprov's process, its CA and connection string, and azure-iot-hub on it."""

    def __init__(self, service: Service, data_dir: Path) -> None:
        self.service = service
        self.ca = str(data_dir / "tls" / "ca.pem")
        self.connection_string = cloud_connection_string(data_dir)

    def registry(self) -> Any:
        return python_registry(self.connection_string, self.ca)

    async def device(self, device_id: str) -> Any:
        try:
            return await asyncio.to_thread(self.registry().get_device, device_id)
        except HttpOperationError as error:
            assert error.response.status_code == 404, error
            return None

    async def twin(self, device_id: str) -> Any:
        return await asyncio.to_thread(self.registry().get_twin, device_id)


@pytest.fixture(scope="module")
def cloud(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cloud]:
    """One cloud hub for the module (a devprov takes seconds to start): each test uses device
    ids of its own."""
    data_dir = tmp_path_factory.mktemp("cloud")
    service = cloud_devprov(data_dir)
    service.start()
    try:
        yield Cloud(service, data_dir)
    finally:
        service.stop()


@pytest.fixture
async def dps(
    tmp_path: Path, cloud: Cloud, monkeypatch: pytest.MonkeyPatch
) -> AsyncIterator[Running]:
    monkeypatch.setenv("SSL_CERT_FILE", cloud.ca)  # trust the cloud as OpenSSL clients do
    running = await start_devprov(
        tmp_path / "dps",
        f"sqlite:///{tmp_path / 'dps.db'}",
        hub_connector_timeout=TIMEOUT,
        fast_path_seconds=30,
    )
    try:
        await running.service().link_hub(
            CLOUD_HUB, connector="azure-iothub", connectionString=cloud.connection_string
        )
        yield running
    finally:
        await running.devprov.close()


def _provision_and_connect(dps: Running, cloud: Cloud, registration_id: str, key: str) -> Any:
    """The official Python device SDK: provision, connect to the assigned hub, read the twin,
    send a message."""
    provisioning = ProvisioningDeviceClient.create_from_symmetric_key(
        provisioning_host="localhost",
        registration_id=registration_id,
        id_scope=dps.id_scope,
        symmetric_key=key,
        server_verification_cert=Path(dps.ca).read_text(),
    )
    result = provisioning.register()
    state = result.registration_state
    assert state is not None, result.status
    client = IoTHubDeviceClient.create_from_symmetric_key(
        symmetric_key=key,
        hostname=state.assigned_hub,
        device_id=state.device_id,
        server_verification_cert=Path(cloud.ca).read_text(),
    )
    client.connect()
    try:
        twin = client.get_twin()
        client.send_message(Message(json.dumps({"temperature": 20})))  # type: ignore[no-untyped-call]
    finally:
        client.shutdown()
    return result.status, state.assigned_hub, twin


async def test_an_sdk_device_gets_its_identity_and_twin_on_the_cloud_hub_and_connects(
    dps: Running, cloud: Cloud
) -> None:
    enrollment = await create_enrollment(
        dps, "sk-1", initialTwin=TWIN, capabilities={"iotEdge": True}
    )
    key = primary_key(enrollment)

    status, hub, device_twin = await asyncio.to_thread(
        _provision_and_connect, dps, cloud, "sk-1", key
    )

    assert (status, hub) == ("assigned", CLOUD_HUB)
    assert device_twin["desired"]["interval"] == 30
    device = await cloud.device("sk-1")
    assert device.status == "enabled" and device.capabilities.iot_edge is True
    assert device.authentication.type == "sas"
    assert device.authentication.symmetric_key.primary_key == key
    twin = await cloud.twin("sk-1")
    assert twin.tags == {"site": "lab"} and twin.properties.desired["interval"] == 30


async def test_an_x509_device_is_self_signed_with_its_sha256_thumbprint(
    dps: Running, cloud: Cloud, tmp_path: Path
) -> None:
    issued = await individual_x509(dps, "x509-1")
    _, chain, key = issued.save(tmp_path, "x509-1")

    def provision() -> Any:
        client = ProvisioningDeviceClient.create_from_x509_certificate(
            provisioning_host="localhost",
            registration_id="x509-1",
            id_scope=dps.id_scope,
            x509=X509(cert_file=str(chain), key_file=str(key)),  # type: ignore[no-untyped-call]
            server_verification_cert=Path(dps.ca).read_text(),
        )
        return client.register()

    result = await asyncio.to_thread(provision)

    assert result.status == "assigned"
    device = await cloud.device("x509-1")
    thumbprint = issued.certificate.fingerprint(SHA256()).hex().upper()
    assert device.authentication.type == "selfSigned"
    assert device.authentication.x509_thumbprint.primary_thumbprint == thumbprint


async def test_an_identity_already_there_with_another_etag_is_taken_over(
    dps: Running, cloud: Cloud
) -> None:
    registry = cloud.registry()
    await asyncio.to_thread(
        registry.create_device_with_sas, "taken", generate_key(), generate_key(), "disabled"
    )
    enrollment = await create_enrollment(dps, "taken", initialTwin=TWIN)

    status, body, _ = await register(dps, "taken", primary_key(enrollment))

    assert (status, body["status"]) == (200, "assigned"), body
    device = await cloud.device("taken")
    assert device.status == "enabled"
    assert device.authentication.symmetric_key.primary_key == primary_key(enrollment)
    assert (await cloud.twin("taken")).tags == {"site": "lab"}


async def test_migrate_carries_the_live_twin_both_ways_and_leaves_no_identity_behind(
    dps: Running, cloud: Cloud
) -> None:
    await dps.service().link_hub(BUILTIN_HUB)
    enrollment = await create_enrollment(
        dps, "mover", initialTwin=TWIN, allocationPolicy="static", iotHubs=[CLOUD_HUB]
    )
    key = primary_key(enrollment)
    assert (await register(dps, "mover", key))[1]["status"] == "assigned"
    twin = await cloud.twin("mover")
    patch = Twin(properties=TwinProperties(desired={"changed": "in the cloud"}))
    await asyncio.to_thread(cloud.registry().update_twin, "mover", patch, twin.etag)

    async def move_to(hub: str) -> dict[str, Any]:
        await create_enrollment(
            dps,
            "mover",
            attestation={"type": "symmetricKey", "symmetricKey": {"primaryKey": key}},
            initialTwin=TWIN,
            allocationPolicy="static",
            iotHubs=[hub],
        )
        status, answer, _ = await register(dps, "mover", key)
        assert status == 200 and answer["status"] == "assigned", answer
        state: dict[str, Any] = answer["registrationState"]
        return state

    state = await move_to(BUILTIN_HUB)

    assert state["substatus"] == "deviceDataMigrated"
    assert await cloud.device("mover") is None
    here = await dps.service().call("GET", f"/linkedHubs/{BUILTIN_HUB}/devices/mover")
    desired = here["twin"]["properties"]["desired"]
    assert desired == {"interval": 30, "changed": "in the cloud"}

    state = await move_to(CLOUD_HUB)

    assert (state["assignedHub"], state["substatus"]) == (CLOUD_HUB, "deviceDataMigrated")
    twin = await cloud.twin("mover")
    assert twin.tags == {"site": "lab"}
    assert twin.properties.desired["changed"] == "in the cloud"


async def failed_with_400213(dps: Running, registration_id: str, key: str, words: str) -> None:
    """The registration failed naming the hub and the cause, and its record says so."""
    status, body, _ = await register(dps, registration_id, key)
    assert (status, body["status"]) == (200, "failed"), body
    state = body["registrationState"]
    assert state["errorCode"] == 400213, state
    assert CLOUD_HUB in state["errorMessage"] and words in state["errorMessage"], state
    assert "SharedAccessKey" not in state["errorMessage"]
    record = await dps.service().get_registration(registration_id)
    assert (record["status"], record["errorCode"]) == ("failed", 400213)
    assert "assignedHub" not in record


async def test_a_hub_that_hangs_or_is_down_fails_the_registration_and_writes_nothing(
    dps: Running, cloud: Cloud
) -> None:
    keys = {}
    for device in ("before", "hung", "down"):
        keys[device] = primary_key(await create_enrollment(dps, device))
    assert (await register(dps, "before", keys["before"]))[1]["status"] == "assigned"

    cloud.service.freeze()  # it accepts connections and never answers
    try:
        await failed_with_400213(dps, "hung", keys["hung"], f"did not answer within {TIMEOUT:g} s")
    finally:
        cloud.service.thaw()
    await asyncio.to_thread(cloud.service.stop)
    try:
        await failed_with_400213(dps, "down", keys["down"], "cannot connect")
    finally:
        await asyncio.to_thread(cloud.service.start)

    assert await cloud.device("down") is None
    assert (await register(dps, "down", keys["down"]))[1]["status"] == "assigned"
    assert await cloud.device("down") is not None and await cloud.device("before") is not None


async def test_a_refused_key_fails_the_registration_and_check_says_why(
    dps: Running, cloud: Cloud
) -> None:
    wrong = cloud.connection_string.rsplit("SharedAccessKey=", 1)[0] + "SharedAccessKey="
    await dps.service().link_hub(
        CLOUD_HUB, connector="azure-iothub", connectionString=wrong + generate_key()
    )
    enrollment = await create_enrollment(dps, "refused")

    await failed_with_400213(dps, "refused", primary_key(enrollment), "401")

    checked = await check(dps)
    assert checked.exit_code == 1
    assert "IotHubUnauthorizedAccess" in checked.stdout and "iothubowner" in checked.stdout


async def test_check_reads_and_proves_write_rights_without_changing_anything(
    dps: Running, cloud: Cloud
) -> None:
    checked = await check(dps)

    assert checked.exit_code == 0, checked.output
    assert checked.stdout.count("✓") == 3, checked.stdout
    devices = await asyncio.to_thread(cloud.registry().get_devices)
    assert not [device for device in devices if device.device_id.startswith("devprov-check")]


async def check(dps: Running) -> Any:
    arguments = ["hub", "check", CLOUD_HUB, "--data-dir", str(dps.data_dir)]
    return await asyncio.to_thread(CliRunner().invoke, app, arguments)


async def test_a_port_in_the_host_name_is_kept_for_requests_and_the_token(
    dps: Running, cloud: Cloud
) -> None:
    with_port = cloud.connection_string.replace(
        f"HostName={CLOUD_HUB}", f"HostName={CLOUD_HUB}:443"
    )
    await dps.service().link_hub(CLOUD_HUB, connector="azure-iothub", connectionString=with_port)
    enrollment = await create_enrollment(dps, "ported")

    _, body, _ = await register(dps, "ported", primary_key(enrollment))

    assert body["status"] == "assigned", body
    assert await cloud.device("ported") is not None
