"""The official service clients, unmodified, against devprov on SQLite and PostgreSQL.

Python `azure-iot-deviceprovisioning` (its `aio` client, in the test's event loop) reaches devprov
on any port. Node `azure-iot-provisioning-service` always dials 443, so its tests run only in a
private network namespace: `scripts/run-tests tests/interop/test_service_clients.py`.
"""

from __future__ import annotations

import base64
import json
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from azure.core.exceptions import HttpResponseError, ResourceNotFoundError
from azure.iot.deviceprovisioning.aio import DeviceProvisioningClient

from tests.conftest import Running, Webhook, fixed_ports
from tests.helpers import create_enrollment, create_group, group_device_key, primary_key, register
from tests.interop.node_harness import run_node

pytestmark = pytest.mark.interop

NODE_DIR = Path(__file__).parent / "node"
SELECT_ALL = {"query": "SELECT *"}
ETAG_MISMATCH = 412001
ALREADY_EXISTS = 409201
REGISTRATION_NOT_FOUND = 404202


@dataclass(frozen=True)
class RecordKind:
    """What differs between individual enrollments and enrollment groups, per client."""

    id_field: str
    python_attribute: str
    bulk_field: str
    not_found_code: int
    item_type: str
    node_noun: str
    node_plural: str

    def python(self, client: DeviceProvisioningClient) -> Any:
        return getattr(client, self.python_attribute)

    def node(self, verb: str, *args: Any) -> dict[str, Any]:
        """One harness op, e.g. `node("get", id)` → getIndividualEnrollment(id)."""
        return {"op": f"{verb}{self.node_noun}", "args": list(args)}

    def node_attestation(self, record_id: str) -> dict[str, Any]:
        return {"op": f"get{self.node_noun}AttestationMechanism", "args": [record_id]}

    def node_query(self, page_size: int) -> dict[str, Any]:
        return {"op": f"query{self.node_plural}", "query": SELECT_ALL, "pageSize": page_size}


INDIVIDUAL = RecordKind(
    "registrationId",
    "enrollment",
    "enrollments",
    404201,
    "Enrollment",
    "IndividualEnrollment",
    "IndividualEnrollments",
)
GROUP = RecordKind(
    "enrollmentGroupId",
    "enrollment_group",
    "enrollmentGroups",
    404204,
    "EnrollmentGroup",
    "EnrollmentGroup",
    "EnrollmentGroups",
)
# Ids with every punctuation DPS allows, in mixed case: clients percent-encode the ':' in paths,
# and ids are compared without case.
PY_ID = "Lot:7.py_1-A"
NODE_ID = "Lot:7.node_1-A"
KINDS = pytest.mark.parametrize("kind", [INDIVIDUAL, GROUP], ids=["enrollment", "group"])


def new_record(kind: RecordKind, record_id: str, **fields: Any) -> dict[str, Any]:
    """A symmetric-key record whose keys are left null, for the service to generate."""
    keys = {"primaryKey": None, "secondaryKey": None}
    attestation = {"type": "symmetricKey", "symmetricKey": keys}
    return {kind.id_field: record_id, "attestation": attestation, **fields}


def generated_keys(attestation: dict[str, Any]) -> dict[str, str]:
    """The keys the service made up for null ones: distinct, base64 of 64 bytes (as DPS makes)."""
    assert attestation["type"] == "symmetricKey", attestation
    keys: dict[str, str] = attestation["symmetricKey"]
    assert set(keys) == {"primaryKey", "secondaryKey"}, attestation
    for which in ("primaryKey", "secondaryKey"):
        assert len(base64.b64decode(keys[which], validate=True)) == 64, attestation
    assert keys["primaryKey"] != keys["secondaryKey"], attestation
    return keys


def assert_error_body(body: Any, code: int) -> None:
    assert body["errorCode"] == code, body
    assert isinstance(body["message"], str) and body["message"], body
    assert body["trackingId"], body


# Registrations: devices of a custom-allocation group (the webhook gives a payload) and one
# individually enrolled device, all provisioned to a linked hub through the device API.

WEBHOOK_PAYLOAD = {"firmware": "https://fw.example/v2.bin", "slot": {"n": 3, "tags": ["a", "b"]}}
GROUP_DEVICES = ["reg-1", "reg-2", "reg-3"]


async def provision_devices(running: Running, webhook: Webhook) -> None:
    await running.service().link_hub("hub.example")
    group = await create_group(
        running,
        "fleet",
        allocationPolicy="custom",
        customAllocationDefinition={"webhookUrl": webhook.url, "apiVersion": "2021-10-01"},
    )
    webhook.answer({"iotHubHostName": "hub.example", "payload": WEBHOOK_PAYLOAD})
    for device in GROUP_DEVICES:
        status, body, _ = await register(running, device, group_device_key(group, device))
        assert (status, body["status"]) == (200, "assigned"), body
    solo = await create_enrollment(running, "solo")
    status, body, _ = await register(running, "solo", primary_key(solo))
    assert (status, body["status"]) == (200, "assigned"), body


def assert_group_device_state(state: Mapping[str, Any], device: str) -> None:
    assert state["registrationId"] == device
    assert state["deviceId"] == device
    assert state["status"] == "assigned"
    assert state["substatus"] == "initialAssignment"
    assert state["assignedHub"] == "hub.example"
    assert state["payload"] == WEBHOOK_PAYLOAD
    assert state["etag"]
    assert state["createdDateTimeUtc"]


# Python: azure-iot-deviceprovisioning ----------------------------------------------------


@asynccontextmanager
async def python_client(running: Running) -> AsyncIterator[DeviceProvisioningClient]:
    client = DeviceProvisioningClient.from_connection_string(
        running.connection_string, connection_verify=running.ca
    )
    async with client:
        yield client


def assert_python_error(error: HttpResponseError, status: int, code: int) -> None:
    response: Any = error.response
    assert response is not None
    assert error.status_code == status, response.text()
    assert response.headers["Content-Type"].startswith("application/json")
    assert response.headers["x-ms-error-code"] == str(code)
    assert_error_body(response.json(), code)


async def python_pages(paged: Any) -> list[list[dict[str, Any]]]:
    return [[item async for item in page] async for page in paged.by_page()]


@KINDS
async def test_python_record_lifecycle(devprov: Running, kind: RecordKind) -> None:
    async with python_client(devprov) as client:
        ops = kind.python(client)
        created = await ops.create_or_update(PY_ID, new_record(kind, PY_ID))
        assert created[kind.id_field] == PY_ID
        assert created["etag"] and created["createdDateTimeUtc"]
        keys = generated_keys(created["attestation"])

        got = await ops.get(PY_ID.lower())
        assert got[kind.id_field] == PY_ID
        assert got["attestation"] == {"type": "symmetricKey"}
        assert got["etag"] == created["etag"]
        if kind is INDIVIDUAL:
            assert got["registrationState"] == {"registrationId": PY_ID, "status": "unassigned"}
        else:
            assert "registrationState" not in got

        got["initialTwin"] = {"tags": {"revision": 2}}
        updated = await ops.create_or_update(PY_ID, got, if_match=got["etag"])
        assert updated["initialTwin"] == {"tags": {"revision": 2}}
        assert updated["etag"] not in (None, created["etag"])
        assert updated["attestation"]["symmetricKey"] == keys
        assert updated["createdDateTimeUtc"] == created["createdDateTimeUtc"]

        got["initialTwin"] = {"tags": {"revision": 3}}
        with pytest.raises(HttpResponseError) as stale_update:
            await ops.create_or_update(PY_ID, got, if_match=created["etag"])
        assert_python_error(stale_update.value, 412, ETAG_MISMATCH)
        current = await ops.get(PY_ID)
        assert current["initialTwin"] == {"tags": {"revision": 2}}
        assert current["etag"] == updated["etag"]

        mechanism = await ops.get_attestation_mechanism(PY_ID)
        assert mechanism == {"type": "symmetricKey", "symmetricKey": keys}

        with pytest.raises(HttpResponseError) as stale_delete:
            await ops.delete(PY_ID, if_match=created["etag"])
        assert_python_error(stale_delete.value, 412, ETAG_MISMATCH)
        await ops.delete(PY_ID, if_match=updated["etag"])
        with pytest.raises(ResourceNotFoundError) as missing:
            await ops.get(PY_ID)
        assert_python_error(missing.value, 404, kind.not_found_code)
        with pytest.raises(ResourceNotFoundError) as missing_again:
            await ops.delete(PY_ID)
        assert_python_error(missing_again.value, 404, kind.not_found_code)


@KINDS
async def test_python_query_walks_every_page(devprov: Running, kind: RecordKind) -> None:
    ids = [f"paged-{n}" for n in range(5)]
    async with python_client(devprov) as client:
        ops = kind.python(client)
        for record_id in ids:
            await ops.create_or_update(record_id, new_record(kind, record_id))
        pages = await python_pages(await ops.query(SELECT_ALL, top=2))
        everything = [item async for item in await ops.query(SELECT_ALL)]

    assert [len(page) for page in pages] == [2, 2, 1]
    seen = [item[kind.id_field] for page in pages for item in page]
    assert sorted(seen) == ids
    for item in (item for page in pages for item in page):
        assert item["attestation"] == {"type": "symmetricKey"}
        assert "registrationState" not in item
    assert sorted(item[kind.id_field] for item in everything) == ids


@KINDS
async def test_python_bulk_create_and_delete(devprov: Running, kind: RecordKind) -> None:
    ids = ["bulk-0", "bulk-1", "bulk-2"]
    async with python_client(devprov) as client:
        ops = kind.python(client)
        created = await ops.run_bulk_operation(
            {"mode": "create", kind.bulk_field: [new_record(kind, i) for i in ids]}
        )
        assert created == {"isSuccessful": True, "errors": []}
        for record_id in ids:
            assert (await ops.get(record_id))["attestation"] == {"type": "symmetricKey"}
            generated_keys(await ops.get_attestation_mechanism(record_id))

        again = await ops.run_bulk_operation(
            {"mode": "create", kind.bulk_field: [new_record(kind, "bulk-0"), new_record(kind, "x")]}
        )
        assert again["isSuccessful"] is False
        (error,) = again["errors"]
        assert error[kind.id_field] == "bulk-0"
        assert error["errorCode"] == ALREADY_EXISTS
        assert error["errorStatus"]
        assert (await ops.get("x"))[kind.id_field] == "x"

        deleted = await ops.run_bulk_operation(
            {"mode": "delete", kind.bulk_field: [{kind.id_field: i} for i in [*ids, "x"]]}
        )
        assert deleted == {"isSuccessful": True, "errors": []}
        for record_id in [*ids, "x"]:
            with pytest.raises(ResourceNotFoundError) as missing:
                await ops.get(record_id)
            assert_python_error(missing.value, 404, kind.not_found_code)


async def test_python_registration_records(devprov: Running, webhook: Webhook) -> None:
    await provision_devices(devprov, webhook)
    async with python_client(devprov) as client:
        registrations = client.device_registration_state
        solo = await client.enrollment.get("solo")
        assert solo["registrationState"]["status"] == "assigned"
        assert solo["registrationState"]["assignedHub"] == "hub.example"
        assert solo["registrationState"]["deviceId"] == "solo"

        state = await registrations.get("reg-1")
        assert_group_device_state(state, "reg-1")

        pages = await python_pages(await registrations.query("fleet", top=2))
        assert [len(page) for page in pages] == [2, 1]
        listed = [item for page in pages for item in page]
        assert sorted(item["registrationId"] for item in listed) == GROUP_DEVICES
        for item in listed:
            assert_group_device_state(item, item["registrationId"])

        await registrations.delete("reg-1", if_match=state["etag"])
        with pytest.raises(ResourceNotFoundError) as missing:
            await registrations.get("reg-1")
        assert_python_error(missing.value, 404, REGISTRATION_NOT_FOUND)
        with pytest.raises(ResourceNotFoundError) as missing_again:
            await registrations.delete("reg-1")
        assert_python_error(missing_again.value, 404, REGISTRATION_NOT_FOUND)
        remaining = [item async for item in await registrations.query("fleet")]
        assert sorted(item["registrationId"] for item in remaining) == ["reg-2", "reg-3"]


# Node: azure-iot-provisioning-service (dials 443, so only inside the private namespace) ---


async def node_service(running: Running, *ops: dict[str, Any]) -> list[dict[str, Any]]:
    """Runs tests/interop/node/service.js with `ops`; answers one result per op."""
    spec = {
        "connectionString": running.connection_string,
        "ops": list(ops),
        "timeoutMs": 30000,
        "maxPages": 10,
    }
    output = await run_node("service.js", spec, running.ca)
    assert "error" not in output, output
    results: list[dict[str, Any]] = output["results"]
    assert len(results) == len(ops), output
    return results


def node_value(result: dict[str, Any], status: int | None = 200) -> Any:
    assert result["ok"], result
    assert result.get("statusCode") == status, result
    return result["value"]


def assert_node_error(result: dict[str, Any], status: int, name: str, code: int) -> None:
    assert not result["ok"], result
    error = result["error"]
    assert (error["statusCode"], error["name"]) == (status, name), error
    assert_error_body(json.loads(error["responseBody"]), code)


def node_items(result: dict[str, Any]) -> list[dict[str, Any]]:
    assert result["ok"], result
    return [item for page in result["pages"] for item in page["items"]]


@fixed_ports
@KINDS
async def test_node_record_lifecycle(devprov: Running, kind: RecordKind) -> None:
    create, get, mechanism = await node_service(
        devprov,
        kind.node("createOrUpdate", new_record(kind, NODE_ID)),
        kind.node("get", NODE_ID.lower()),
        kind.node_attestation(NODE_ID),
    )
    created = node_value(create)
    assert created[kind.id_field] == NODE_ID
    keys = generated_keys(created["attestation"])
    got = node_value(get)
    assert got[kind.id_field] == NODE_ID
    assert got["attestation"] == {"type": "symmetricKey"}
    assert got["etag"] == created["etag"]
    if kind is INDIVIDUAL:
        assert got["registrationState"] == {"registrationId": NODE_ID, "status": "unassigned"}
    else:
        assert "registrationState" not in got
    assert node_value(mechanism) == {"type": "symmetricKey", "symmetricKey": keys}

    # The Node client sends the record's own etag as If-Match.
    update = {**got, "initialTwin": {"tags": {"revision": 2}}}
    stale = {**got, "initialTwin": {"tags": {"revision": 3}}, "etag": created["etag"]}
    updated_result, stale_result, after = await node_service(
        devprov,
        kind.node("createOrUpdate", update),
        kind.node("createOrUpdate", stale),
        kind.node("get", NODE_ID),
    )
    updated = node_value(updated_result)
    assert updated["initialTwin"] == {"tags": {"revision": 2}}
    assert updated["etag"] not in (None, created["etag"])
    assert updated["attestation"]["symmetricKey"] == keys
    assert_node_error(stale_result, 412, "InvalidEtagError", ETAG_MISMATCH)
    assert node_value(after)["initialTwin"] == {"tags": {"revision": 2}}
    assert node_value(after)["etag"] == updated["etag"]

    stale_delete, delete, gone, delete_again = await node_service(
        devprov,
        kind.node("delete", NODE_ID, created["etag"]),
        kind.node("delete", updated),
        kind.node("get", NODE_ID),
        kind.node("delete", NODE_ID),
    )
    assert_node_error(stale_delete, 412, "InvalidEtagError", ETAG_MISMATCH)
    assert node_value(delete, status=None) is None
    assert_node_error(gone, 404, "Error", kind.not_found_code)
    assert gone["error"]["message"] == "Not found"
    assert_node_error(delete_again, 404, "Error", kind.not_found_code)


@fixed_ports
@KINDS
async def test_node_query_walks_every_page(devprov: Running, kind: RecordKind) -> None:
    ids = [f"paged-{n}" for n in range(5)]
    *creates, query = await node_service(
        devprov,
        *(kind.node("createOrUpdate", new_record(kind, i)) for i in ids),
        kind.node_query(page_size=2),
    )
    for create in creates:
        generated_keys(node_value(create)["attestation"])
    assert query["ok"], query
    pages = query["pages"]
    assert [len(page["items"]) for page in pages] == [2, 2, 1]
    assert all(page["statusCode"] == 200 for page in pages)
    assert all(page["headers"]["x-ms-item-type"] == kind.item_type for page in pages)
    assert [page["continuationToken"] is not None for page in pages] == [True, True, False]
    assert "x-ms-continuation" not in pages[-1]["headers"]
    items = node_items(query)
    assert sorted(item[kind.id_field] for item in items) == ids
    assert all(item["attestation"] == {"type": "symmetricKey"} for item in items)


@fixed_ports
async def test_node_bulk_create_and_delete(devprov: Running) -> None:
    ids = ["bulk-0", "bulk-1", "bulk-2"]
    bulk = "runBulkEnrollmentOperation"
    records = [new_record(INDIVIDUAL, i) for i in ids]
    created, again, mechanism, deleted, gone = await node_service(
        devprov,
        {"op": bulk, "args": [{"mode": "create", "enrollments": records}]},
        {"op": bulk, "args": [{"mode": "create", "enrollments": records[:1]}]},
        INDIVIDUAL.node_attestation("bulk-1"),
        {"op": bulk, "args": [{"mode": "delete", "enrollments": records}]},
        INDIVIDUAL.node("get", "bulk-2"),
    )
    assert node_value(created) == {"isSuccessful": True, "errors": []}
    refused = node_value(again)
    assert refused["isSuccessful"] is False
    (error,) = refused["errors"]
    assert (error["registrationId"], error["errorCode"]) == ("bulk-0", ALREADY_EXISTS)
    generated_keys(node_value(mechanism))
    assert node_value(deleted) == {"isSuccessful": True, "errors": []}
    assert_node_error(gone, 404, "Error", INDIVIDUAL.not_found_code)


@fixed_ports
async def test_node_registration_records(devprov: Running, webhook: Webhook) -> None:
    await provision_devices(devprov, webhook)
    query = {"op": "queryDeviceRegistrationStates", "groupId": "fleet", "pageSize": 2}
    state_result, solo_result, listed = await node_service(
        devprov,
        {"op": "getDeviceRegistrationState", "args": ["reg-1"]},
        INDIVIDUAL.node("get", "solo"),
        query,
    )
    state = node_value(state_result)
    assert_group_device_state(state, "reg-1")
    solo = node_value(solo_result)["registrationState"]
    assert (solo["status"], solo["assignedHub"], solo["deviceId"]) == (
        "assigned",
        "hub.example",
        "solo",
    )
    assert listed["ok"], listed
    pages = listed["pages"]
    assert [len(page["items"]) for page in pages] == [2, 1]
    assert all(page["headers"]["x-ms-item-type"] == "DeviceRegistration" for page in pages)
    items = node_items(listed)
    assert sorted(item["registrationId"] for item in items) == GROUP_DEVICES
    for item in items:
        assert_group_device_state(item, item["registrationId"])

    delete, gone, delete_again, remaining = await node_service(
        devprov,
        {"op": "deleteDeviceRegistrationState", "args": ["reg-1", state["etag"]]},
        {"op": "getDeviceRegistrationState", "args": ["reg-1"]},
        {"op": "deleteDeviceRegistrationState", "args": ["reg-1"]},
        query,
    )
    assert node_value(delete, status=None) is None
    assert_node_error(gone, 404, "Error", REGISTRATION_NOT_FOUND)
    assert_node_error(delete_again, 404, "Error", REGISTRATION_NOT_FOUND)
    assert sorted(item["registrationId"] for item in node_items(remaining)) == ["reg-2", "reg-3"]
