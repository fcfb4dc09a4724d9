"""Allocator functions the tests configure by name, as an operator would (`--allocator`)."""

from __future__ import annotations

import asyncio
import time
from typing import Any

CALLS: list[dict[str, Any]] = []


def by_model(body: dict[str, Any]) -> dict[str, Any]:
    """Plain function: kettles to the hub whose name starts with "kettles", others to the last."""
    CALLS.append(body)
    context = body["deviceRuntimeContext"]
    model = (context.get("payload") or {}).get("modelId", "")
    hubs = body["linkedHubs"]
    hub = (
        next((h for h in hubs if h.startswith("kettles")), hubs[-1])
        if "kettle" in model
        else hubs[-1]
    )
    return {
        "iotHubHostName": hub,
        "initialTwin": {"tags": {"model": model}},
        "payload": {"chosenBy": "by_model", "registrationId": context["registrationId"]},
    }


async def first_hub(body: dict[str, Any]) -> dict[str, Any]:
    await asyncio.sleep(0)
    return {"iotHubHostName": body["linkedHubs"][0], "payload": {"async": True}}


def broken(body: dict[str, Any]) -> dict[str, Any]:
    raise ValueError("no hub for you")


def slow(body: dict[str, Any]) -> dict[str, Any]:
    time.sleep(0.5)
    return {"iotHubHostName": body["linkedHubs"][0]}


def not_json(body: dict[str, Any]) -> Any:
    return {"iotHubHostName": body["linkedHubs"][0], "payload": {1, 2}}


NOT_CALLABLE = 3
