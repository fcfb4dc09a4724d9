"""The ways the benchmark allocates: hashed, a payload route, an in-process allocator, a webhook;
and what a route costs on its own, measured in this process."""

from __future__ import annotations

import time
from typing import Any

from devprov.allocation.payload import matching_route, route_answer
from devprov.domain.models import PayloadRoute

ALLOCATOR_NAME = "bench"
ALLOCATOR_SPEC = "devprov.bench.allocation:allocate"
BENCH_PAYLOAD = {"modelId": "dtmi:bench;1"}  # what every virtual device sends (fleet.py)
ROUTES: list[dict[str, Any]] = [
    {
        "match": {
            "type": "object",
            "required": ["modelId"],
            "properties": {"modelId": {"const": "dtmi:other;1"}},
        },
        "iotHubHostName": "bench-hub-2.example",
    },
    {
        "match": {
            "type": "object",
            "required": ["modelId"],
            "properties": {"modelId": {"type": "string", "pattern": "^dtmi:bench;"}},
        },
        "iotHubHostName": "bench-hub-1.example",
        "payload": {"ticket": "bench", "model": "{payload.modelId}"},
    },
]


async def allocate(body: dict[str, Any]) -> dict[str, Any]:
    """The in-process allocator the benchmark configures: the webhook's answer, without HTTP."""
    return {"iotHubHostName": body["linkedHubs"][0], "payload": {"ticket": "bench"}}


def group_fields(allocation: str, webhook_url: str | None) -> dict[str, Any]:
    """The enrollment group fields that make devprov allocate this way."""
    if allocation == "route":
        return {"payloadRoutes": ROUTES}
    if allocation == "allocator":
        url = f"allocator://{ALLOCATOR_NAME}"
    elif allocation == "webhook":
        assert webhook_url is not None
        url = webhook_url
    else:
        return {}
    return {
        "allocationPolicy": "custom",
        "customAllocationDefinition": {"webhookUrl": url, "apiVersion": "2021-10-01"},
    }


def route_microseconds(rounds: int = 20_000) -> float:
    """CPU time of matching the bench payload against ROUTES (the second matches) and filling
    the answer, per registration, validators compiled as in a running devprov."""
    routes = [PayloadRoute.model_validate(route) for route in ROUTES]
    matching_route(routes, BENCH_PAYLOAD)  # compile once, as the first registration does
    started = time.process_time()
    for _ in range(rounds):
        route = matching_route(routes, BENCH_PAYLOAD)
        assert route is not None
        route_answer(route, "bench-device", BENCH_PAYLOAD)
    return (time.process_time() - started) / rounds * 1e6
