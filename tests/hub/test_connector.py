"""The built-in connector: what DPS writes to devprov's own hub, over a real store."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from devprov.domain.errors import DpsError
from devprov.domain.models import LinkedHub
from devprov.hub.connector import BuiltinConnector, prepare
from devprov.hub.devices import HubDevices
from devprov.hub.presence import Presence
from devprov.hubs.connector import DeviceIdentity
from devprov.store.database import Store
from devprov.store.schema import migrate

HUB = LinkedHub(host_name="hub.example", connector="builtin")
KEYS = {"primaryKey": "a2V5LW9uZS1rZXktb25lLWtleS1vbmUtMTIzNDU2Nzg=", "secondaryKey": None}


class Watcher:
    def __init__(self) -> None:
        self.reasons: list[str] = []

    def push_desired(self, delta: dict[str, object]) -> None: ...

    async def invoke(self, method: str, payload: object, wait_seconds: float) -> tuple[int, object]:
        return 200, None

    def disconnect(self, reason: str) -> None:
        self.reasons.append(reason)


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[Store]:
    url = f"sqlite:///{tmp_path / 'hub.db'}"
    migrate(url)
    opened = Store.connect(url)
    yield opened
    await opened.close()


def identity(twin: dict[str, object] | None) -> DeviceIdentity:
    return DeviceIdentity(
        "hub.example", "dev-1", "dev-1", {"type": "sas", "symmetricKey": KEYS}, initial_twin=twin
    )


async def test_dps_creates_the_identity_with_its_twin_then_keeps_the_twin(store: Store) -> None:
    devices = HubDevices(store)
    connector = BuiltinConnector(devices, Presence())
    await connector.upsert_device(HUB, identity({"tags": {"a": 1}}))
    device = await devices.require("hub.example", "dev-1")
    device["twin"]["properties"]["reported"]["x"] = 1  # what the device reported meanwhile
    await devices.change("hub.example", "dev-1", lambda _: device)

    await connector.upsert_device(HUB, identity(None))  # re-registration: twin left alone

    kept = await devices.require("hub.example", "DEV-1")
    assert kept["twin"]["properties"]["reported"]["x"] == 1
    assert await connector.read_twin(HUB, "dev-1") == {"tags": {"a": 1}}

    await connector.upsert_device(HUB, identity({"tags": {"b": 2}}))  # reset: applied again
    assert await connector.read_twin(HUB, "dev-1") == {"tags": {"b": 2}}


async def test_a_device_that_leaves_is_removed_and_disconnected(store: Store) -> None:
    presence, watcher = Presence(), Watcher()
    connector = BuiltinConnector(HubDevices(store), presence)
    await connector.upsert_device(HUB, identity(None))
    presence.attach("hub.example", "dev-1", watcher)

    await connector.remove_device(HUB, "dev-1")

    assert await HubDevices(store).get("hub.example", "dev-1") is None
    assert watcher.reasons and presence.link("hub.example", "dev-1") is None


def test_a_built_in_hub_gets_its_own_connection_string() -> None:
    prepared = prepare(HUB)
    assert prepared.connection_string is not None
    assert prepared.connection_string.startswith(
        "HostName=hub.example;SharedAccessKeyName=iothubowner;"
    )
    assert prepare(prepared) == prepared
    for bad in ("HostName=other.example;SharedAccessKeyName=x;SharedAccessKey=a2V5", "garbage"):
        with pytest.raises(DpsError):
            prepare(HUB.model_copy(update={"connection_string": bad}))


def test_a_built_in_hub_needs_a_name_a_certificate_can_carry() -> None:
    """Found by the OpenAPI fuzz run: a non-ASCII name broke the server certificate (500)."""
    assert prepare(HUB.model_copy(update={"host_name": "127.0.0.1"})).connection_string
    for bad in ("h\u00fcb.example", "a..b", "-a.example", "a b"):
        with pytest.raises(DpsError) as refused:
            prepare(HUB.model_copy(update={"host_name": bad}))
        assert refused.value.error_code == 400004
