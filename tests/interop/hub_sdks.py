"""What the hub interop tests share: a built-in hub, a webhook that turns payloads into twins,
and the official service SDKs (Python azure-iot-hub, Node azure-iothub) called from threads."""

from __future__ import annotations

import json
import os
import subprocess
from typing import Any

from aiohttp import web

from tests.conftest import Running, Webhook
from tests.interop.node_harness import NODE_DIR

HUB = "hub-1.devprov.test"


def payload_to_twin(webhook: Webhook) -> None:
    """The custom allocation webhook at the heart of the project: the device's payload becomes
    its initial twin, and the device is welcomed back."""

    async def allocate(body: dict[str, Any]) -> web.StreamResponse:
        payload = body["deviceRuntimeContext"]["payload"]
        registration_id = body["deviceRuntimeContext"]["registrationId"]
        return web.json_response(
            {
                "iotHubHostName": HUB,
                "initialTwin": {
                    "tags": {"model": payload["modelId"]},
                    "properties": {"desired": {"interval": payload["interval"]}},
                },
                "payload": {"welcome": registration_id},
            }
        )

    webhook.behaviour = allocate


async def link_hub(running: Running, webhook: Webhook) -> str:
    """Link the built-in hub (after start: its name joins the TLS certificate then)."""
    await running.service().link_hub(HUB)
    payload_to_twin(webhook)
    return await running.hub_connection_string(HUB)


def custom_allocation(webhook: Webhook) -> dict[str, Any]:
    return {
        "allocationPolicy": "custom",
        "customAllocationDefinition": {"webhookUrl": webhook.url, "apiVersion": "2021-10-01"},
    }


def python_registry(connection_string: str, ca: str) -> Any:
    """azure-iot-hub's IoTHubRegistryManager, trusting devprov's CA."""
    from azure.iot.hub import IoTHubRegistryManager

    registry = IoTHubRegistryManager.from_connection_string(connection_string)
    registry.protocol.config.connection.verify = ca  # msrest's setting for requests' `verify`
    return registry


def node_service(connection_string: str, ca: str, action: str, **fields: Any) -> Any:
    """One azure-iothub call (tests/interop/node/hub_service.js), synchronously."""
    request = {"connectionString": connection_string, "action": action, **fields}
    done = subprocess.run(
        ["node", str(NODE_DIR / "hub_service.js"), json.dumps(request)],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, "NODE_EXTRA_CA_CERTS": ca},
        check=True,
    )
    outcome = json.loads(done.stdout.strip().splitlines()[-1])
    assert outcome["ok"], outcome
    return outcome["result"]
