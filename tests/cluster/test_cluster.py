"""Several nodes, one DPS: what a device or a service client does on one node holds on the others.

Three `devprov serve` processes, each in a network namespace of its own, behind HAProxy, on one
PostgreSQL (tests/cluster/topology.py). The tests run in order on one cluster; those that stop a
node start it again.
"""

from __future__ import annotations

import asyncio
import base64
import json
import os
import signal
import subprocess
from typing import Any

import aiohttp
import pytest
from aiohttp import web

from devprov.domain.keys import derive_device_key
from tests.cluster.conftest import Deployment, eventually, sql
from tests.cluster.topology import Cluster, Node
from tests.conftest import Webhook
from tests.tpm_support import SoftTpmDevice

HUB = "hub.example"


@pytest.fixture
async def linked(deployment: Deployment) -> Deployment:
    await deployment.service().link_hub(HUB)
    return deployment


async def slow_group(deployment: Deployment, group_id: str, webhook: Webhook) -> str:
    """A group allocated by `webhook`; answers its key."""
    group = await deployment.service().put_group(
        {
            "enrollmentGroupId": group_id,
            "attestation": {"type": "symmetricKey"},
            "allocationPolicy": "custom",
            "customAllocationDefinition": {"webhookUrl": webhook.url, "apiVersion": "2021-10-01"},
        }
    )
    key: str = group["attestation"]["symmetricKey"]["primaryKey"]
    return key


def held(webhook: Webhook) -> tuple[asyncio.Event, asyncio.Event]:
    """Make the webhook wait for `release`; `called` is set when a node has asked it."""
    called, release = asyncio.Event(), asyncio.Event()

    async def answer(body: dict[str, Any]) -> web.StreamResponse:
        called.set()
        await release.wait()
        return web.json_response({"iotHubHostName": body["linkedHubs"][0]})

    webhook.behaviour = answer
    return called, release


def test_every_node_shows_one_identity_and_chains_to_one_ca(cluster: Cluster) -> None:
    shown = []
    for node in cluster.nodes:
        done = subprocess.run(
            [
                cluster.python,
                "-m",
                "devprov.cli",
                "info",
                "--json",
                "--data-dir",
                str(node.data_dir),
            ],
            capture_output=True,
            check=True,
            env={**os.environ, "DEVPROV_SECRET_KEY": cluster.sealing_key()},
        )
        shown.append(json.loads(done.stdout))
    assert len({info["idScope"] for info in shown}) == 1
    assert len({info["serviceConnectionString"] for info in shown}) == 1
    # A client that trusts node 1's CA reaches every node by its own address.
    for node in cluster.nodes:
        assert cluster.ready(node) == 200


async def test_a_device_registers_through_the_balancer_and_polls_on_the_other_nodes(
    linked: Deployment, webhook: Webhook
) -> None:
    key = derive_device_key(await slow_group(linked, "polled", webhook), "polled-1")
    called, release = held(webhook)
    status, body, _ = await linked.register("polled-1", key)
    assert (status, body["status"]) == (202, "assigning"), body
    operation = body["operationId"]
    await called.wait()
    for node in linked.cluster.nodes:  # whichever took it, each node answers for it
        status, polled, _ = await linked.poll("polled-1", key, operation, at=node)
        assert (status, polled["status"]) == (202, "assigning")
    release.set()

    async def assigned_everywhere() -> bool:
        for node in linked.cluster.nodes:
            status, polled, _ = await linked.poll("polled-1", key, operation, at=node)
            if status != 200:
                assert (status, polled["status"]) == (202, "assigning")
                return False
            assert polled["status"] == "assigned"
            assert polled["registrationState"]["assignedHub"] == HUB
        return True

    await eventually(assigned_everywhere)
    assert len(webhook.requests) == 1  # one node allocated it, once


async def test_a_change_through_one_nodes_service_api_is_seen_by_the_next_registration_on_another(
    linked: Deployment,
) -> None:
    first, _, third = linked.cluster.nodes[:3]
    await linked.service(first).link_hub("other.example")
    group = await linked.service(first).put_group(
        {"enrollmentGroupId": "changed", "attestation": {"type": "symmetricKey"}}
    )
    key = derive_device_key(group["attestation"]["symmetricKey"]["primaryKey"], "changed-1")
    status, body, _ = await linked.register("changed-1", key, at=third)
    assert (status, body["status"]) == (200, "assigned"), body

    # An enrollment's hubs changed on node 1: node 3's next registration follows them.
    enrollment = await linked.service(first).put_enrollment(
        {
            "registrationId": "moved-1",
            "attestation": {"type": "symmetricKey"},
            "allocationPolicy": "hashed",
            "iotHubs": [HUB],
        }
    )
    moved_key = enrollment["attestation"]["symmetricKey"]["primaryKey"]
    status, body, _ = await linked.register("moved-1", moved_key, at=third)
    assert body["registrationState"]["assignedHub"] == HUB
    enrollment["iotHubs"] = ["other.example"]
    await linked.service(first).put_enrollment(enrollment)
    status, body, _ = await linked.register("moved-1", moved_key, at=third)
    assert (status, body["registrationState"]["assignedHub"]) == (200, "other.example"), body

    # The group disabled on node 1: node 3 refuses its devices at once.
    group["provisioningStatus"] = "disabled"
    await linked.service(first).put_group(group)
    status, body, _ = await linked.register("changed-1", key, at=third)
    assert (status, body["errorCode"]) == (403, 403001), body


class TpmDevice(SoftTpmDevice):
    """A TPM device of software keys, enough to answer a challenge from any node."""

    def token(self, id_scope: str, challenge: dict[str, Any]) -> str:
        return self.signed_token(id_scope, self.open(challenge["authenticationKey"]))


async def test_a_tpm_challenge_issued_by_one_node_is_answered_on_another(
    linked: Deployment,
) -> None:
    first, second = linked.cluster.nodes[:2]
    device = TpmDevice()
    await linked.service().put_enrollment(
        {
            "registrationId": device.registration_id,
            "attestation": {
                "type": "tpm",
                "tpm": {"endorsementKey": base64.b64encode(device.ek).decode()},
            },
        }
    )
    path = f"/{linked.id_scope}/registrations/{device.registration_id}/register?api-version=1"
    status, challenge, _ = await linked.device("PUT", path, at=first, body=device.body())
    assert status == 401 and "authenticationKey" in challenge, challenge
    token = device.token(linked.id_scope, challenge)
    status, body, _ = await linked.device(
        "PUT", path, at=second, body=device.body(), authorization=token
    )
    assert (status, body.get("status")) == (200, "assigned"), body
    # The challenge is used up on every node: node 1 refuses the same answer.
    status, body, _ = await linked.device(
        "PUT", path, at=first, body=device.body(), authorization=token
    )
    assert (status, body["errorCode"]) == (401, 401000), body


async def test_a_draining_node_leaves_the_balancer_and_finishes_what_it_holds(
    linked: Deployment, webhook: Webhook
) -> None:
    cluster = linked.cluster
    node = cluster.nodes[2]
    key = derive_device_key(await slow_group(linked, "drained", webhook), "drained-1")
    called, release = held(webhook)
    status, body, _ = await linked.register("drained-1", key, at=node)
    assert (status, body["status"]) == (202, "assigning"), body
    operation = body["operationId"]
    await called.wait()
    assert node.process is not None
    node.process.send_signal(signal.SIGTERM)

    async def out_of_the_balancer() -> bool:
        return cluster.servers_up().get(f"node{node.number}") != "UP"

    await eventually(out_of_the_balancer)
    assert cluster.ready(node) in (0, 503)  # unready, or no longer taking connections
    assert node.process.poll() is None  # still finishing the registration it holds
    group = await linked.service().put_group(
        {"enrollmentGroupId": "undrained", "attestation": {"type": "symmetricKey"}}
    )
    other_key = derive_device_key(group["attestation"]["symmetricKey"]["primaryKey"], "undrained-1")
    for _ in range(4):  # round robin over the balancer: none lands on the draining node
        status, body, _ = await linked.register("undrained-1", other_key)
        assert (status, body["status"]) == (200, "assigned"), body
    release.set()
    assert await asyncio.to_thread(node.process.wait, 120) == 0  # drained, then exited
    node.process = None
    status, polled, _ = await linked.poll("drained-1", key, operation)
    assert (status, polled["status"]) == (200, "assigned"), polled
    cluster.start(node)  # it comes back, the others untouched
    cluster.wait_up(len(cluster.nodes))


async def test_a_node_started_later_joins_without_restarting_the_others(
    linked: Deployment,
) -> None:
    cluster = linked.cluster
    running = {node.number: node.process.pid for node in cluster.nodes if node.process}
    group = await linked.service().put_group(
        {"enrollmentGroupId": "joined", "attestation": {"type": "symmetricKey"}}
    )
    key = derive_device_key(group["attestation"]["symmetricKey"]["primaryKey"], "joined-1")
    newcomer = cluster.add_node()
    cluster.start(newcomer)  # its own data dir: it takes the deployment's identity from the store
    cluster.balance()  # HAProxy reloaded with one more server; no devprov restarted
    assert {n.number: n.process.pid for n in cluster.nodes[:-1] if n.process} == running
    status, body, _ = await linked.register("joined-1", key, at=newcomer)
    assert (status, body["status"]) == (200, "assigned"), body
    assert cluster.servers_up()[f"node{newcomer.number}"] == "UP"


async def test_a_node_killed_mid_load_loses_no_device_and_leaves_nothing_assigning(
    linked: Deployment, webhook: Webhook
) -> None:
    """Devices register through the balancer (some straight at the victim, so it surely holds
    registrations); the victim is SIGKILLed while they are all `assigning`; the devices then
    behave as the SDKs do (poll after Retry-After; on a failed result or a broken connection,
    register again). Every one ends assigned once, with one hub identity, and no operation is
    left `assigning`: what the dead node held is settled by a survivor's sweep once its claims
    expire (answered with the record, or failed with 500101)."""
    cluster = linked.cluster
    victim = cluster.nodes[1]
    devices = [f"loaded-{number}" for number in range(30)]
    group_key = await slow_group(linked, "loaded", webhook)
    keys = {device: derive_device_key(group_key, device) for device in devices}
    _, release = held(webhook)

    async def accepted(device: str, at: Node | None) -> tuple[int, Any, dict[str, str]]:
        """Register until the service takes it (it answers `assigning`, the webhook being
        held); an SDK retries a 5xx (e.g. PostgreSQL refusing a connection) the same way."""
        while True:
            answer = await linked.register(device, keys[device], at=at)
            if answer[0] == 202:
                return answer
            assert answer[0] >= 500 or answer[0] == 429, answer
            await asyncio.sleep(1)

    first_answers = await asyncio.gather(
        *(accepted(device, victim if number < 5 else None) for number, device in enumerate(devices))
    )
    assert all(answer[1]["status"] == "assigning" for answer in first_answers)
    assert cluster.stop(victim, signal.SIGKILL) == -signal.SIGKILL
    release.set()

    async def like_an_sdk(device: str, answer: tuple[int, Any, dict[str, str]]) -> Any:
        status, body, headers = answer
        while True:
            try:
                while status == 202 and body.get("status") == "assigning":
                    await asyncio.sleep(float(headers.get("Retry-After", 1)))
                    status, body, headers = await linked.poll(
                        device, keys[device], body["operationId"]
                    )
                if status == 200 and body.get("status") == "assigned":
                    return body["registrationState"]
            except aiohttp.ClientError:
                pass
            await asyncio.sleep(1)
            try:
                status, body, headers = await linked.register(device, keys[device])
            except aiohttp.ClientError:
                status, body, headers = 0, {}, {}

    states = await asyncio.wait_for(
        asyncio.gather(*(like_an_sdk(d, a) for d, a in zip(devices, first_answers, strict=True))),
        300,
    )
    assert {state["registrationId"] for state in states} == set(devices)

    records = sql(
        cluster,
        "SELECT key, document->>'status', document->>'assignedHub' FROM registrations"
        " WHERE group_key = 'loaded'",
    )
    assert sorted(key for key, _, _ in records) == sorted(devices)
    assert {status for _, status, _ in records} == {"assigned"}
    identities = sql(cluster, "SELECT hub_key, document->>'deviceId' FROM hub_devices")
    of_loaded = [(hub, device) for hub, device in identities if device.startswith("loaded-")]
    assert sorted(device for _, device in of_loaded) == sorted(devices)  # one identity each
    assert {(hub, device) for hub, device in of_loaded} == {
        (hub, key) for key, _, hub in records
    }  # on the hub its record names

    async def nothing_assigning() -> bool:
        left = sql(
            cluster, "SELECT count(*) FROM operations WHERE document->>'status' = 'assigning'"
        )
        return int(left[0][0]) == 0

    await eventually(nothing_assigning)
    failed_by_a_survivor = sql(
        cluster,
        "SELECT count(*) FROM operations"
        " WHERE document->'registrationState'->>'errorCode' IN ('500001', '500101')",
    )[0][0]
    assert failed_by_a_survivor >= 5  # at least those sent straight to the victim
