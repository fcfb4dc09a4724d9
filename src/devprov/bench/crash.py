"""Registrations under load while the server is killed: which devices were told `assigned`.

Devices of several enrollment groups register over HTTPS and MQTT in turn, each on a new
connection, some registering again; every `assigned` answer is noted with the hub it named.
Killing the server makes the devices in flight fail, which is counted, not raised: what the
crash test then checks is that every device told `assigned` is where its record says.
"""

from __future__ import annotations

import asyncio
import random
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field

from devprov.bench.fleet import Fleet
from devprov.bench.load import (
    DEVICE_TIMEOUT_SECONDS,
    Target,
    https_register_alone,
    mqtt_register,
)

ERROR_PAUSE_SECONDS = 0.05  # a dead server refuses at once: do not spin


@dataclass
class Outcomes:
    """What the devices were told: the hub of each registration id answered `assigned`."""

    assigned: dict[str, str] = field(default_factory=dict)
    errors: Counter[str] = field(default_factory=Counter)
    attempts: int = 0
    next_number: int = 0


async def drive(
    fleets: Sequence[Fleet],
    target: Target,
    stop: asyncio.Event,
    outcomes: Outcomes,
    *,
    devices: int = 16,
    again: float = 0.2,
) -> None:
    """`devices` devices at a time register until `stop` is set: a new one each time, or
    (with chance `again`) one told `assigned` before, over HTTPS and MQTT in turn."""

    async def device(slot: int) -> None:
        turn = slot
        while not stop.is_set():
            turn += 1
            fleet = fleets[turn % len(fleets)]
            known = [rid for rid in outcomes.assigned if rid.startswith(fleet.prefix + "-")]
            if known and random.random() < again:
                number = int(random.choice(known).rsplit("-", 1)[1])
            else:
                number, outcomes.next_number = outcomes.next_number, outcomes.next_number + 1
            register = https_register_alone if turn % 2 else mqtt_register
            outcomes.attempts += 1
            try:
                async with asyncio.timeout(DEVICE_TIMEOUT_SECONDS):
                    hub = await register(fleet, number, target)
            except Exception as error:  # a killed server fails a device in many ways
                outcomes.errors[type(error).__name__] += 1
                await asyncio.sleep(ERROR_PAUSE_SECONDS)
                continue
            outcomes.assigned[fleet.registration_id(number)] = hub

    await asyncio.gather(*(device(slot) for slot in range(devices)))
