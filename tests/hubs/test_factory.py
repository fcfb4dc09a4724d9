"""Connectors built from a linked hub's settings: checked when linked, started, rebuilt, closed."""

from __future__ import annotations

import pytest

from devprov.domain.errors import DpsError
from devprov.domain.models import LinkedHub
from devprov.hubs.factory import ConnectorFactory, Connectors
from tests.registration.fakes import MemoryHub


def factory(built: list[MemoryHub]) -> ConnectorFactory:
    def build(hub: LinkedHub) -> MemoryHub:
        built.append(MemoryHub())
        return built[-1]

    def prepare(hub: LinkedHub) -> LinkedHub:
        if hub.connection_string == "bad":
            raise DpsError(400, 400004, "connectionString: bad")
        return hub.model_copy(update={"location": "checked"})

    made = ConnectorFactory()
    made.register("memory", build, prepare)
    return made


def test_an_unknown_kind_is_refused_naming_the_field() -> None:
    with pytest.raises(DpsError) as refused:
        factory([]).prepare(LinkedHub(host_name="h.example", connector="mqtt-ish"))
    assert refused.value.error_code == 400004
    assert refused.value.message.startswith("connector: 'mqtt-ish'")
    assert "memory" in refused.value.message


def test_a_kinds_own_preparation_runs_when_linked() -> None:
    prepared = factory([]).prepare(LinkedHub(host_name="h.example", connector="memory"))
    assert prepared.location == "checked"


def test_a_kinds_own_check_refuses_when_linked() -> None:
    with pytest.raises(DpsError, match="connectionString"):
        factory([]).prepare(
            LinkedHub(host_name="h.example", connector="memory", connection_string="bad")
        )


async def test_one_connector_per_hub_started_once_rebuilt_on_change_closed_in_order() -> None:
    built: list[MemoryHub] = []
    connectors = Connectors(factory(built))
    first = LinkedHub(host_name="a.example", connector="memory", connection_string="x")
    second = LinkedHub(host_name="b.example", connector="memory")

    same = await asyncio_gather(connectors, [first, first, first.model_copy()])
    assert len({id(c) for c in same}) == 1 and built[0].started == 1

    await connectors.for_hub(second)
    changed = first.model_copy(update={"connection_string": "y"})
    rebuilt = await connectors.for_hub(changed)
    assert rebuilt is built[2] and built[0].closed == 1  # the old one is closed

    await connectors.close()
    assert [hub.closed for hub in built] == [1, 1, 1]


async def asyncio_gather(connectors: Connectors, hubs: list[LinkedHub]) -> list[object]:
    import asyncio

    return list(await asyncio.gather(*(connectors.for_hub(hub) for hub in hubs)))
