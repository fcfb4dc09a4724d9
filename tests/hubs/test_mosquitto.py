"""The mosquitto connector against a real Eclipse Mosquitto 2 with its dynamic security plugin.

Each module starts Debian's `mosquitto` with the configuration the project ships
(examples/mosquitto/mosquitto.conf: dynamic security, loopback), on a free port, its dynamic
security file made by `mosquitto_ctrl dynsec init`. Devices provisioned through devprov then
connect to it with paho-mqtt exactly as a device would, with what provisioning gave them.
"""

from __future__ import annotations

import asyncio
import json
import shutil
import subprocess
import threading
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import paho.mqtt.client as paho
import pytest
from azure.iot.device import X509, ProvisioningDeviceClient
from typer.testing import CliRunner

from devprov import certmaker
from devprov.certmaker import Issued
from devprov.cli import app
from devprov.domain.models import LinkedHub
from devprov.hubs import mosquitto
from devprov.hubs.connector import ConnectorError, DeviceIdentity
from devprov.server.tls import ensure_certificates
from tests.conftest import Running, fixed_ports, free_port, start_devprov
from tests.helpers import create_enrollment, create_group, group_device_key, primary_key, register
from tests.hubs.services import REPO, Service

HUB = "broker.devprov.test"  # tests/interop/hosts: 127.0.0.1
BUILTIN_HUB = "hub-1.devprov.test"
ADMIN_PASSWORD = "admin-password-for-tests"
TWIN = {"tags": {"site": "lab"}, "properties": {"desired": {"interval": 30}}}
TIMEOUT = 3.0


class Broker:
    def __init__(
        self, service: Service, port: int, tls_port: int, devices_ca: Issued, server_ca: str
    ) -> None:
        self.service = service
        self.port = port
        self.tls_port = tls_port  # X.509 devices: the CN of a certificate from devices_ca
        self.devices_ca = devices_ca
        self.server_ca = server_ca

    def url(self, password: str = ADMIN_PASSWORD) -> str:
        return f"mqtt://admin:{password}@127.0.0.1:{self.port}"


@pytest.fixture(scope="module")
def broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Broker]:
    """Mosquitto with the shipped configuration; only its port changes, and it keeps root's
    rights (the test's directory is root's own)."""
    broker_binary = shutil.which("mosquitto") or shutil.which("mosquitto", path="/usr/sbin")
    if broker_binary is None or shutil.which("mosquitto_ctrl") is None:
        pytest.fail("Debian's mosquitto package is needed (.ci/run installs it)")
    home = tmp_path_factory.mktemp("mosquitto")
    subprocess.run(
        ["mosquitto_ctrl", "dynsec", "init", "dynamic-security.json", "admin", ADMIN_PASSWORD],
        cwd=home, check=True, capture_output=True,
    )  # fmt: skip
    port, tls_port = free_port(), free_port()
    devices_ca = certmaker.root_ca("devices CA")
    (home / "devices-ca.pem").write_bytes(devices_ca.pem())
    tls = ensure_certificates(home / "tls", ["127.0.0.1", "localhost"])
    shutil.copy(tls.cert, home / "server.pem")
    shutil.copy(tls.key, home / "server-key.pem")
    shipped = (REPO / "examples" / "mosquitto" / "mosquitto.conf").read_text()
    config = shipped.replace("listener 18830 127.0.0.1", f"listener {port} 127.0.0.1")
    # The shipped X.509 listener, switched on.
    x509 = config[config.index("# listener 18831") :]
    config = config.replace(x509, x509.replace("# ", "").replace("18831", f"{tls_port} 127.0.0.1"))
    (home / "mosquitto.conf").write_text(config + "\nuser root\n")
    argv = [broker_binary, "-c", "mosquitto.conf"]
    service = Service("mosquitto", argv, ("127.0.0.1", port), home)
    service.start()
    try:
        yield Broker(service, port, tls_port, devices_ca, str(tls.ca_cert))
    finally:
        service.stop()


@pytest.fixture
async def dps(tmp_path: Path, broker: Broker) -> AsyncIterator[Running]:
    running = await start_devprov(
        tmp_path / "dps",
        f"sqlite:///{tmp_path / 'dps.db'}",
        hub_connector_timeout=TIMEOUT,
        fast_path_seconds=30,
    )
    try:
        await running.service().link_hub(HUB, connector="mosquitto", connectionString=broker.url())
        yield running
    finally:
        await running.devprov.close()


class Device:
    """A device (or a back end) on Mosquitto, with paho-mqtt as devices use it."""

    def __init__(
        self, broker: Broker, username: str, password: str | None, host: str = "127.0.0.1"
    ) -> None:
        self.host = host
        self.client = paho.Client(client_id=username, clean_session=True)
        self.client.username_pw_set(username, password)
        self.messages: list[tuple[str, bytes, bool]] = []
        self.arrived = threading.Condition()
        self.connack: int | None = None
        self.connected = threading.Event()
        self.acks: dict[int, tuple[int, ...]] = {}
        self.client.on_connect = self._on_connect
        self.client.on_message = self._on_message
        self.client.on_subscribe = self._on_subscribe
        self.client.on_disconnect = lambda *_: self.connected.clear()
        self.broker = broker

    def _on_connect(self, client: Any, userdata: Any, flags: Any, code: int) -> None:
        self.connack = code
        if code == 0:
            self.connected.set()
        with self.arrived:
            self.arrived.notify_all()

    def _on_message(self, client: Any, userdata: Any, message: Any) -> None:
        with self.arrived:
            self.messages.append((message.topic, message.payload, bool(message.retain)))
            self.arrived.notify_all()

    def _on_subscribe(self, client: Any, userdata: Any, mid: int, granted: Any) -> None:
        with self.arrived:
            self.acks[mid] = tuple(granted)
            self.arrived.notify_all()

    def connect(self, certificate: tuple[Path, Path] | None = None) -> int:
        """CONNACK's return code (0: accepted, 5: not authorised); with a certificate (chain and
        key files), over TLS to the X.509 listener."""
        port = self.broker.port
        if certificate is not None:
            self.client.tls_set(self.broker.server_ca, str(certificate[0]), str(certificate[1]))
            port = self.broker.tls_port
        self.client.connect(self.host, port)
        self.client.loop_start()
        with self.arrived:
            assert self.arrived.wait_for(lambda: self.connack is not None, 10)
        assert self.connack is not None
        return self.connack

    def subscribe(self, topic: str) -> tuple[int, ...]:
        _, mid = self.client.subscribe(topic, 1)
        with self.arrived:
            assert self.arrived.wait_for(lambda: mid in self.acks, 10)
        return self.acks[mid]

    def publish(self, topic: str, payload: bytes) -> None:
        self.client.publish(topic, payload, qos=1).wait_for_publish()

    def wait_for(self, topic: str) -> bytes:
        with self.arrived:
            assert self.arrived.wait_for(lambda: any(m[0] == topic for m in self.messages), 10)
        return next(payload for seen, payload, _ in self.messages if seen == topic)

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


def _provision(dps: Running, registration_id: str, key: str) -> Any:
    provisioning = ProvisioningDeviceClient.create_from_symmetric_key(
        provisioning_host="localhost",
        registration_id=registration_id,
        id_scope=dps.id_scope,
        symmetric_key=key,
        server_verification_cert=Path(dps.ca).read_text(),
    )
    return provisioning.register()


@fixed_ports
async def test_sdk_devices_connect_with_what_they_were_given_each_to_its_own_topics(
    dps: Running, broker: Broker
) -> None:
    group = await create_group(dps, "fleet", initialTwin=TWIN)
    keys = {name: group_device_key(group, name) for name in ("dev-a", "dev-b")}
    results = [await asyncio.to_thread(_provision, dps, name, keys[name]) for name in keys]
    assert [(r.status, r.registration_state.assigned_hub) for r in results] == [
        ("assigned", HUB),
        ("assigned", HUB),
    ]
    # Each connects to the hub it was assigned (tests/interop/hosts resolves it).
    a, b = (Device(broker, name, keys[name], host=HUB) for name in ("dev-a", "dev-b"))
    watcher = Device(broker, "admin", ADMIN_PASSWORD)  # may read every topic, as a back end
    try:
        assert await asyncio.to_thread(a.connect) == 0
        assert await asyncio.to_thread(b.connect) == 0
        assert await asyncio.to_thread(watcher.connect) == 0
        assert await asyncio.to_thread(watcher.subscribe, "devices/#") == (1,)

        assert await asyncio.to_thread(a.subscribe, "devices/dev-a/twin/desired") == (1,)
        twin = await asyncio.to_thread(a.wait_for, "devices/dev-a/twin/desired")
        assert json.loads(twin) == {"interval": 30}
        await asyncio.to_thread(a.publish, "devices/dev-a/messages/events", b'{"t": 21}')
        assert await asyncio.to_thread(watcher.wait_for, "devices/dev-a/messages/events")

        assert await asyncio.to_thread(b.subscribe, "devices/dev-a/#") == (0x80,)
        await asyncio.to_thread(b.publish, "devices/dev-a/messages/events", b"forged")
        await asyncio.to_thread(b.publish, "devices/dev-b/messages/events", b"mine")
        # Mosquitto handles one client's publishes in order: the second is through, so the
        # first was dropped, not late.
        await asyncio.to_thread(watcher.wait_for, "devices/dev-b/messages/events")
        assert b"forged" not in [payload for _, payload, _ in watcher.messages]
        assert b"forged" not in [payload for _, payload, _ in a.messages]
    finally:
        for device in (a, b, watcher):
            device.close()


async def test_a_device_that_moves_away_is_removed_and_cannot_connect(
    dps: Running, broker: Broker
) -> None:
    await dps.service().link_hub(BUILTIN_HUB)
    enrollment = await create_enrollment(dps, "mover", initialTwin=TWIN, iotHubs=[HUB],
                                         allocationPolicy="static")  # fmt: skip
    key = primary_key(enrollment)
    assert (await register(dps, "mover", key))[1]["status"] == "assigned"
    device = Device(broker, "mover", key)
    assert await asyncio.to_thread(device.connect) == 0
    device.close()

    await create_enrollment(
        dps, "mover", attestation={"type": "symmetricKey", "symmetricKey": {"primaryKey": key}},
        iotHubs=[BUILTIN_HUB], allocationPolicy="static",
    )  # fmt: skip
    _, body, _ = await register(dps, "mover", key)

    assert body["registrationState"]["substatus"] == "deviceDataMigrated", body
    moved = await dps.service().call("GET", f"/linkedHubs/{BUILTIN_HUB}/devices/mover")
    assert moved["twin"] == {"properties": {"desired": {"interval": 30}}}  # Mosquitto has no tags
    assert await asyncio.to_thread(Device(broker, "mover", key).connect) == 5


async def failed_with_400213(dps: Running, registration_id: str, key: str, words: str) -> None:
    status, body, _ = await register(dps, registration_id, key)
    assert (status, body["status"]) == (200, "failed"), body
    state = body["registrationState"]
    assert state["errorCode"] == 400213, state
    assert HUB in state["errorMessage"] and words in state["errorMessage"], state
    assert ADMIN_PASSWORD not in state["errorMessage"]
    record = await dps.service().get_registration(registration_id)
    assert (record["status"], record["errorCode"]) == ("failed", 400213)
    assert "assignedHub" not in record


async def test_a_broker_that_hangs_or_is_down_fails_the_registration(
    dps: Running, broker: Broker
) -> None:
    keys = {name: primary_key(await create_enrollment(dps, name)) for name in ("b1", "b2", "b3")}
    assert (await register(dps, "b1", keys["b1"]))[1]["status"] == "assigned"

    broker.service.freeze()
    try:
        await failed_with_400213(dps, "b2", keys["b2"], f"did not answer within {TIMEOUT:g} s")
    finally:
        broker.service.thaw()
    await asyncio.to_thread(broker.service.stop)
    try:
        await failed_with_400213(dps, "b3", keys["b3"], "cannot connect to Mosquitto")
    finally:
        await asyncio.to_thread(broker.service.start)

    assert await asyncio.to_thread(Device(broker, "b3", keys["b3"]).connect) == 5
    assert (await register(dps, "b3", keys["b3"]))[1]["status"] == "assigned"
    assert await asyncio.to_thread(Device(broker, "b3", keys["b3"]).connect) == 0
    assert await asyncio.to_thread(Device(broker, "b1", keys["b1"]).connect) == 0


async def check(dps: Running) -> Any:
    arguments = ["hub", "check", HUB, "--data-dir", str(dps.data_dir)]
    return await asyncio.to_thread(CliRunner().invoke, app, arguments)


async def test_check_says_what_works_and_a_wrong_password_is_told(
    dps: Running, broker: Broker
) -> None:
    checked = await check(dps)
    assert checked.exit_code == 0 and checked.stdout.count("✓") == 3, checked.output

    await dps.service().link_hub(
        HUB, connector="mosquitto", connectionString=broker.url("not-the-password")
    )
    checked = await check(dps)

    assert checked.exit_code == 1
    assert "refused the user name or password" in checked.stdout
    assert "not-the-password" not in checked.stdout


async def test_the_connector_keeps_x509_devices_passwordless_and_refuses_wildcard_ids(
    broker: Broker,
) -> None:
    hub = LinkedHub(host_name=HUB, connector="mosquitto", connection_string=broker.url())
    connector = mosquitto.build(hub, TIMEOUT)
    await connector.start()
    try:
        x509 = DeviceIdentity(HUB, "cert-1", "cert-1", {"type": "selfSigned"}, initial_twin={})
        await connector.upsert_device(hub, x509)
        assert await connector.read_twin(hub, "cert-1") == {}
        assert await asyncio.to_thread(Device(broker, "cert-1", "anything").connect) == 5

        for device_id in ("a+b", "all#", "a/b"):
            wild = DeviceIdentity(HUB, device_id, device_id, {"type": "selfSigned"})
            with pytest.raises(ConnectorError, match="topic level"):
                await connector.upsert_device(hub, wild)
        await connector.remove_device(hub, "cert-1")
        assert await connector.read_twin(hub, "cert-1") is None
    finally:
        await connector.close()


@fixed_ports
async def test_an_x509_device_connects_by_certificate_to_its_own_topics_only(
    dps: Running, broker: Broker, tmp_path: Path
) -> None:
    """A group of X.509 devices whose CA the broker's TLS listener trusts: the device's client
    has no password, its certificate's CN is its user name, its role its topics."""
    service, root = dps.service(), broker.devices_ca
    await service.call("PUT", "/certificates/devices", {"certificate": root.pem().decode()})
    code = await service.call("POST", "/certificates/devices/generateVerificationCode")
    proof = certmaker.verification(code["properties"]["verificationCode"], root)
    await service.call(
        "POST", "/certificates/devices/verify", {"certificate": proof.pem().decode()}
    )
    await service.put_group(
        {
            "enrollmentGroupId": "x509-fleet",
            "attestation": {"type": "x509", "x509": {"caReferences": {"primary": "devices"}}},
            "initialTwin": TWIN,
        }
    )
    files = {}
    for name in ("cert-dev", "stranger"):
        _, chain, key = certmaker.device(name, root).save(tmp_path, name)
        files[name] = (chain, key)

    def provision() -> Any:
        return ProvisioningDeviceClient.create_from_x509_certificate(
            provisioning_host="localhost", registration_id="cert-dev", id_scope=dps.id_scope,
            x509=X509(cert_file=str(files["cert-dev"][0]), key_file=str(files["cert-dev"][1])),  # type: ignore[no-untyped-call]
            server_verification_cert=Path(dps.ca).read_text(),
        ).register()  # fmt: skip

    result = await asyncio.to_thread(provision)
    assert (result.status, result.registration_state.assigned_hub) == ("assigned", HUB)

    device = Device(broker, "cert-dev", None)
    stranger = Device(broker, "stranger", None)  # same CA, never provisioned
    try:
        assert await asyncio.to_thread(device.connect, files["cert-dev"]) == 0
        assert await asyncio.to_thread(device.subscribe, "devices/cert-dev/twin/desired") == (1,)
        twin = await asyncio.to_thread(device.wait_for, "devices/cert-dev/twin/desired")
        assert json.loads(twin) == {"interval": 30}
        assert await asyncio.to_thread(device.subscribe, "devices/other/#") == (0x80,)
        # Mosquitto lets any certificate of a trusted CA in; one without a client may do nothing.
        assert await asyncio.to_thread(stranger.connect, files["stranger"]) == 0
        assert await asyncio.to_thread(stranger.subscribe, "devices/stranger/#") == (0x80,)
    finally:
        device.close()
        stranger.close()
