"""The placement stage: a plan carried out on the hubs through a connector."""

from __future__ import annotations

import pytest

from devprov.allocation.policies import AllocationError
from devprov.attestation.attested import Attested
from devprov.domain.reprovisioning import Place, Plan
from devprov.hubs.connector import ConnectorError, DeviceIdentity
from devprov.registration.place import Placement
from tests.registration.fakes import MemoryHub, OneConnector, individual, linked

HUBS = linked("old.example", "new.example")
OLD, NEW = HUBS
TWIN = {"tags": {"t": 1}}


def attested() -> Attested:
    return Attested("dev-1", individual(capabilities={"iotEdge": True}), {"type": "sas"})


async def test_the_identity_carries_credentials_capabilities_and_twin() -> None:
    hub = MemoryHub()
    await Placement(OneConnector(hub)).place(
        attested(), NEW, "dev-1", Plan("initialAssignment", TWIN), HUBS
    )
    identity = hub.devices[("new.example", "dev-1")]
    assert identity == DeviceIdentity(
        "new.example", "dev-1", "dev-1", {"type": "sas"}, {"iotEdge": True}, TWIN
    )


async def test_migrate_reads_the_old_twin_then_leaves_the_old_hub() -> None:
    hub = MemoryHub(twins={("old.example", "dev-1"): {"tags": {"carried": True}}})
    hub.devices[("old.example", "dev-1")] = DeviceIdentity("old.example", "dev-1", "dev-1", {})
    old = Place("old.example", "dev-1")
    plan = Plan("deviceDataMigrated", None, carry_twin_from=old, leave=old)

    await Placement(OneConnector(hub)).place(attested(), NEW, "dev-1", plan, HUBS)

    assert hub.twins == {("new.example", "dev-1"): {"tags": {"carried": True}}}
    assert list(hub.devices) == [("new.example", "dev-1")]


async def test_a_twin_that_cannot_be_read_migrates_as_empty() -> None:
    hub = MemoryHub()
    plan = Plan("deviceDataMigrated", None, carry_twin_from=Place("gone.example", "dev-1"))
    await Placement(OneConnector(hub)).place(attested(), NEW, "dev-1", plan, HUBS)
    assert hub.twins == {("new.example", "dev-1"): {}}


async def test_a_failing_connector_fails_the_registration_with_400213() -> None:
    hub = MemoryHub(fail_with=RuntimeError("hub says no"))
    with pytest.raises(AllocationError) as refused:
        await Placement(OneConnector(hub)).place(
            attested(), NEW, "dev-1", Plan("initialAssignment", {}), HUBS
        )
    assert refused.value.error_code == 400213
    assert "'new.example'" in refused.value.message and "hub says no" in refused.value.message


async def test_an_old_hub_that_fails_to_give_the_twin_fails_the_move_with_400213() -> None:
    hub = MemoryHub(fail_with=ConnectorError("IoT hub old.example did not answer within 2 s"))
    old = Place("old.example", "dev-1")
    plan = Plan("deviceDataMigrated", None, carry_twin_from=old, leave=old)

    with pytest.raises(AllocationError) as refused:
        await Placement(OneConnector(hub)).place(attested(), NEW, "dev-1", plan, HUBS)

    assert refused.value.error_code == 400213
    assert "'old.example'" in refused.value.message and "2 s" in refused.value.message
    assert hub.devices == {}  # nothing was written on the new hub
