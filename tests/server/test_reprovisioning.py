"""Reprovisioning: what happens to a device's hub, twin and substatus when it registers again."""

from __future__ import annotations

from typing import Any

import pytest

from tests.conftest import Running, Webhook
from tests.helpers import create_enrollment, primary_key, register


async def device_on(running: Running, hub: str, device_id: str) -> dict[str, Any] | None:
    status, body, _ = await running.service().request(
        "GET", f"/linkedHubs/{hub}/devices/{device_id}"
    )
    return body if status == 200 else None


async def first_on_hub_a(running: Running, **policy: Any) -> str:
    for hub in ("hub-a.example", "hub-b.example"):
        await running.service().link_hub(hub)
    enrollment = await create_enrollment(
        running,
        "mover",
        allocationPolicy="static",
        iotHubs=["hub-a.example"],
        initialTwin={"tags": {"version": 1}},
        **policy,
    )
    status, body, _ = await register(running, "mover", primary_key(enrollment))
    assert (status, body["registrationState"]["assignedHub"]) == (200, "hub-a.example")
    return primary_key(enrollment)


async def move_to_hub_b(running: Running, key: str, policy: dict[str, bool]) -> dict[str, Any]:
    await create_enrollment(
        running,
        "mover",
        attestation={"type": "symmetricKey", "symmetricKey": {"primaryKey": key}},
        allocationPolicy="static",
        iotHubs=["hub-b.example"],
        initialTwin={"tags": {"version": 2}},
        reprovisionPolicy=policy,
    )
    status, body, _ = await register(running, "mover", key)
    assert status == 200, body
    state: dict[str, Any] = body["registrationState"]
    return state


@pytest.mark.parametrize(
    ("migrate", "substatus", "twin_version"),
    [(True, "deviceDataMigrated", 1), (False, "deviceDataReset", 2)],
)
async def test_moving_hubs_migrates_or_resets_the_twin(
    devprov: Running, migrate: bool, substatus: str, twin_version: int
) -> None:
    key = await first_on_hub_a(devprov)

    state = await move_to_hub_b(
        devprov, key, {"updateHubAssignment": True, "migrateDeviceData": migrate}
    )

    assert (state["assignedHub"], state["substatus"]) == ("hub-b.example", substatus)
    moved = await device_on(devprov, "hub-b.example", "mover")
    assert moved is not None and moved["twin"] == {"tags": {"version": twin_version}}
    assert await device_on(devprov, "hub-a.example", "mover") is None


async def test_never_reprovision_keeps_the_hub_and_tells_the_webhook(
    devprov: Running, webhook: Webhook
) -> None:
    key = await first_on_hub_a(devprov)
    await create_enrollment(
        devprov,
        "mover",
        attestation={"type": "symmetricKey", "symmetricKey": {"primaryKey": key}},
        allocationPolicy="custom",
        customAllocationDefinition={"webhookUrl": webhook.url, "apiVersion": "2021-10-01"},
        reprovisionPolicy={"updateHubAssignment": False, "migrateDeviceData": False},
    )

    status, body, _ = await register(devprov, "mover", key)

    assert status == 200, body
    state = body["registrationState"]
    assert (state["assignedHub"], state["substatus"]) == ("hub-a.example", "initialAssignment")
    (request,) = webhook.requests
    assert request["linkedHubs"] == ["hub-a.example"]
    assert request["deviceRuntimeContext"]["currentIotHubHostName"] == "hub-a.example"
    assert request["deviceRuntimeContext"]["currentDeviceId"] == "mover"


async def test_registering_again_on_the_same_hub_leaves_the_twin(devprov: Running) -> None:
    key = await first_on_hub_a(devprov)

    status, body, _ = await register(devprov, "mover", key)

    assert status == 200, body
    assert body["registrationState"]["substatus"] == "reprovisionedToInitialAssignment"
    device = await device_on(devprov, "hub-a.example", "mover")
    assert device is not None and device["twin"] == {"tags": {"version": 1}}
