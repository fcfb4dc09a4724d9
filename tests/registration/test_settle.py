"""What a killed process leaves behind is settled: an identity on a hub its record does not name
is removed, and an operation left `assigning` is answered (with the record, or failed 500101)."""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa

from devprov.domain.records import Kind, Put
from devprov.protocol.dps import operation_status
from devprov.store.registrations import StoredClaims, StoredOperations
from devprov.store.tables import operations
from tests.conftest import Running, Webhook
from tests.helpers import create_enrollment, device_request, device_token, primary_key
from tests.registration.test_one_place import identities, register_until_done


async def on_hub_a_and_a_stray_on_hub_b(running: Running) -> str:
    """`dev` registered on hub-a; then, as a process killed while moving it would leave it,
    an identity on hub-b too and its claim expired."""
    for hub in ("hub-a.example", "hub-b.example"):
        await running.service().link_hub(hub)
    enrollment = await create_enrollment(
        running, "dev", allocationPolicy="static", iotHubs=["hub-a.example"]
    )
    await register_until_done(running, "dev", primary_key(enrollment))
    store = running.devprov.store
    placed = await store.get(Kind.HUB_DEVICE, "hub-a.example/dev")
    assert placed is not None
    stray = Put(
        Kind.HUB_DEVICE, "hub-b.example/dev", placed.etag, placed.document,
        {"hub_key": "hub-b.example"},
    )  # fmt: skip
    await store.write([stray])
    assert await StoredClaims(store).take("dev", "dev", "killed", seconds=-1) is not None
    assert await identities(running, "dev") == ["hub-a.example", "hub-b.example"]
    return primary_key(enrollment)


async def claims_left(running: Running) -> int:
    return len(await StoredClaims(running.devprov.store).expired())


async def test_the_sweep_removes_an_identity_the_record_does_not_name(devprov: Running) -> None:
    await on_hub_a_and_a_stray_on_hub_b(devprov)

    await devprov.devprov.registrations.provisioning.settling.sweep()

    assert await identities(devprov, "dev") == ["hub-a.example"]
    assert await claims_left(devprov) == 0


async def test_registering_again_removes_the_identity_left_behind(devprov: Running) -> None:
    key = await on_hub_a_and_a_stray_on_hub_b(devprov)

    state = await register_until_done(devprov, "dev", key)

    assert state["assignedHub"] == "hub-a.example"
    assert await identities(devprov, "dev") == ["hub-a.example"]
    assert await claims_left(devprov) == 0


async def orphan(running: Running, operation_id: str, registration_id: str) -> None:
    """An operation left `assigning` by a process killed a while ago."""
    pending = operation_status(
        operation_id, "assigning", {"registrationId": registration_id, "status": "assigning"}
    )
    store = running.devprov.store
    await StoredOperations(store).save(operation_id, registration_id, pending)

    async def age(connection: Any) -> None:
        statement = sa.update(operations).where(operations.c.key == operation_id)
        await connection.execute(statement.values(updated_at=0.0))

    await store.run(age)


async def poll(running: Running, registration_id: str, key: str, operation_id: str) -> Any:
    resource = f"{running.id_scope}/registrations/{registration_id}"
    status, body, _ = await device_request(
        running,
        "GET",
        f"/{running.id_scope}/registrations/{registration_id}/operations/{operation_id}"
        "?api-version=2019-03-31",
        authorization=device_token(resource, key),
    )
    assert status == (202 if body["status"] == "assigning" else 200), body
    return body


async def test_an_orphaned_operation_is_failed_and_the_device_told(devprov: Running) -> None:
    key = await on_hub_a_and_a_stray_on_hub_b(devprov)
    await orphan(devprov, "4.0000000000000001.lost", "dev")
    assert (await poll(devprov, "dev", key, "4.0000000000000001.lost"))["status"] == "assigning"

    await devprov.devprov.registrations.provisioning.settling.sweep()

    answer = await poll(devprov, "dev", key, "4.0000000000000001.lost")
    assert answer["status"] == "failed"
    assert answer["registrationState"]["errorCode"] == 500101


async def test_an_operation_whose_record_was_written_is_answered_with_it(
    devprov: Running,
) -> None:
    """Killed between writing the record and the operation: the poll finds the record at
    once, and the sweep writes it to the operation."""
    key = await on_hub_a_and_a_stray_on_hub_b(devprov)
    record = await devprov.devprov.store.get(Kind.REGISTRATION, "dev")
    assert record is not None
    operation_id = await _operation_of(devprov, "dev")
    await orphan(devprov, operation_id, "dev")

    answer = await poll(devprov, "dev", key, operation_id)
    assert (answer["status"], answer["registrationState"]) == ("assigned", record.document)

    await devprov.devprov.registrations.provisioning.settling.sweep()
    stored = await devprov.devprov.store.get(Kind.OPERATION, operation_id)
    assert stored is not None and stored.document["status"] == "assigned"


async def _operation_of(running: Running, registration_id: str) -> str:
    async with running.devprov.store.database.connect() as connection:
        table = sa.table("registrations", sa.column("key"), sa.column("operation_id"))
        query = sa.select(table.c.operation_id).where(table.c.key == registration_id)
        return str((await connection.execute(query)).scalar_one())


async def test_a_registration_that_fails_leaves_the_stray_to_the_sweep(
    devprov: Running, webhook: Webhook
) -> None:
    """Taking over a cut-short claim and then failing before placing (here the webhook
    refuses), a registration has not removed the stray: it leaves the claim to the sweep."""
    key = await on_hub_a_and_a_stray_on_hub_b(devprov)
    await create_enrollment(
        devprov,
        "dev",
        attestation={"type": "symmetricKey", "symmetricKey": {"primaryKey": key}},
        allocationPolicy="custom",
        customAllocationDefinition={"webhookUrl": webhook.url, "apiVersion": "2021-10-01"},
    )
    webhook.answer({"message": "not now"}, status=500)

    state = await register_until_done(devprov, "dev", key)
    await devprov.devprov.registrations.provisioning.settling.sweep()

    assert (state["status"], state["errorCode"]) == ("failed", 400207)
    assert await identities(devprov, "dev") == ["hub-a.example"]
    assert await claims_left(devprov) == 0
