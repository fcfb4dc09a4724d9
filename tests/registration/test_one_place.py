"""One device, one place: registrations of one id run one at a time, whichever process or node
answers them, so the device's identity is on exactly the hub its record names; a deviceId
another registration holds on a hub is refused (409202)."""

from __future__ import annotations

import asyncio
import random
from pathlib import Path
from typing import Any

from aiohttp import web

from devprov.domain.records import Kind
from tests.conftest import Running, Webhook, free_port, start_devprov
from tests.helpers import create_enrollment, device_request, device_token, primary_key, register

HUBS = ["hub-a.example", "hub-b.example", "hub-c.example"]


def random_hub(webhook: Webhook) -> None:
    """The webhook picks any of the hubs it is offered, at random."""

    async def pick(body: dict[str, Any]) -> web.StreamResponse:
        await asyncio.sleep(random.random() / 100)  # answers overlap, in any order
        return web.json_response({"iotHubHostName": random.choice(body["linkedHubs"])})

    webhook.behaviour = pick


async def register_until_done(running: Running, registration_id: str, key: str) -> dict[str, Any]:
    """Register, and poll until the operation is done: the registration state."""
    status, body, _ = await register(running, registration_id, key)
    while status == 202:
        await asyncio.sleep(0.2)
        resource = f"{running.id_scope}/registrations/{registration_id}"
        status, body, _ = await device_request(
            running,
            "GET",
            f"/{running.id_scope}/registrations/{registration_id}/operations/"
            f"{body['operationId']}?api-version=2019-03-31",
            authorization=device_token(resource, key),
        )
    assert status == 200, body
    state: dict[str, Any] = body["registrationState"]
    return state


async def identities(running: Running, device_id: str) -> list[str]:
    """The built-in hubs that hold an identity of `device_id`."""
    rows = await running.devprov.store.page(Kind.HUB_DEVICE)
    return sorted(
        hub for hub, device in (row.key.split("/", 1) for row in rows) if device == device_id
    )


async def one_device_many_registrations(
    nodes: list[Running], webhook: Webhook, rounds: int, at_once: int
) -> None:
    running = nodes[0]
    for hub in HUBS:
        await running.service().link_hub(hub)
    random_hub(webhook)
    enrollment = await create_enrollment(
        running,
        "racer",
        allocationPolicy="custom",
        customAllocationDefinition={"webhookUrl": webhook.url, "apiVersion": "2021-10-01"},
    )
    key = primary_key(enrollment)
    for _ in range(rounds):
        states = await asyncio.gather(
            *(register_until_done(nodes[n % len(nodes)], "racer", key) for n in range(at_once))
        )
        failed = [state for state in states if state["status"] != "assigned"]
        assert not failed, failed[:3]
        record = await running.devprov.store.get(Kind.REGISTRATION, "racer")
        assert record is not None
        assert await identities(running, "racer") == [record.document["assignedHub"]]
    assert len(webhook.requests) == rounds * at_once


# Every racer is admitted: the admission cap per device (429 past 4 at once) would otherwise
# turn most of them away before they reach the claims these tests are about.
UNCAPPED = {"max_registrations_in_flight_per_device": 0}


async def test_fifty_registrations_of_one_id_leave_one_identity(
    webhook: Webhook, database_url: str, tmp_path: Path
) -> None:
    devprov = await start_devprov(tmp_path / "data", database_url, **UNCAPPED)
    try:
        await one_device_many_registrations([devprov], webhook, rounds=3, at_once=50)
    finally:
        await devprov.devprov.close()


async def test_two_nodes_on_one_database_leave_one_identity(
    webhook: Webhook, database_url: str, tmp_path: Path
) -> None:
    """A second devprov on the same database (and data dir): a node of its own, with its own
    in-process locks; only the claims in the store serialize the two."""
    devprov = await start_devprov(tmp_path / "data", database_url, **UNCAPPED)
    other = await start_devprov(
        devprov.data_dir,
        database_url,
        free_port(),
        mqtt_port=free_port(),
        amqp_port=free_port(),
        **UNCAPPED,
    )
    try:
        await one_device_many_registrations([devprov, other], webhook, rounds=2, at_once=50)
    finally:
        await other.devprov.close()
        await devprov.devprov.close()


async def shared_device_id(running: Running) -> tuple[str, str]:
    await running.service().link_hub("hub-a.example")
    keys = []
    for registration_id in ("first", "second"):
        enrollment = await create_enrollment(
            running,
            registration_id,
            deviceId="shared",
            allocationPolicy="static",
            iotHubs=["hub-a.example"],
        )
        keys.append(primary_key(enrollment))
    return keys[0], keys[1]


async def test_a_device_id_another_registration_holds_is_refused(devprov: Running) -> None:
    first_key, second_key = await shared_device_id(devprov)
    assert (await register_until_done(devprov, "first", first_key))["status"] == "assigned"
    held = await devprov.devprov.store.get(Kind.HUB_DEVICE, "hub-a.example/shared")
    assert held is not None

    refused = await register_until_done(devprov, "second", second_key)

    assert refused["status"] == "failed"
    assert refused["errorCode"] == 409202
    assert "'first'" in refused["errorMessage"]
    still = await devprov.devprov.store.get(Kind.HUB_DEVICE, "hub-a.example/shared")
    assert still is not None and still.document == held.document  # keys included
    # The device that holds it may register again, as often as it likes.
    again = await register_until_done(devprov, "first", first_key)
    assert (again["status"], again["deviceId"]) == ("assigned", "shared")


async def test_a_device_id_is_free_again_once_its_record_is_deleted(devprov: Running) -> None:
    first_key, second_key = await shared_device_id(devprov)
    await register_until_done(devprov, "first", first_key)
    status, _, _ = await devprov.service().request("DELETE", "/registrations/first")
    assert status == 204

    state = await register_until_done(devprov, "second", second_key)

    assert (state["status"], state["deviceId"]) == ("assigned", "shared")


async def test_the_same_device_id_on_another_hub_is_allowed(devprov: Running) -> None:
    first_key, _ = await shared_device_id(devprov)
    await devprov.service().link_hub("hub-b.example")
    await register_until_done(devprov, "first", first_key)
    other = await create_enrollment(
        devprov, "third", deviceId="shared", allocationPolicy="static", iotHubs=["hub-b.example"]
    )

    state = await register_until_done(devprov, "third", primary_key(other))

    assert (state["status"], state["assignedHub"]) == ("assigned", "hub-b.example")
