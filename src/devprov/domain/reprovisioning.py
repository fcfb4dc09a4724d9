"""Reprovisioning: what a registration does to a device's hub, twin and substatus, as a plan.

DPS's reprovisioning policy (`updateHubAssignment`, `migrateDeviceData`) decides, for a device
that registers again, whether it may move, what becomes of its twin, and which substatus it is
told. All of that is decided here, before any hub is touched, so every case is a unit test; the
placement stage then carries the plan out.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from devprov.domain.models import DeviceRegistrationState, ReprovisionPolicy, Substatus


@dataclass(frozen=True)
class Place:
    """Where a device's identity is: a hub and a device id on it."""

    hub: str
    device_id: str


@dataclass(frozen=True)
class Plan:
    """What to do once allocation chose `hub`.

    `twin` is applied on the new hub (None leaves the twin there alone); under "migrate" the
    twin is read from `carry_twin_from` first and applied instead; the device is then removed
    from `leave`, the hub it moved away from."""

    substatus: Substatus
    twin: dict[str, Any] | None
    carry_twin_from: Place | None = None
    leave: Place | None = None


def current_place(previous: DeviceRegistrationState | None) -> Place | None:
    """Where an earlier successful registration put the device (a failed one keeps it there)."""
    if previous is None or not previous.assigned_hub or not previous.device_id:
        return None
    return Place(previous.assigned_hub, previous.device_id)


def stays_put(previous: DeviceRegistrationState | None, policy: ReprovisionPolicy) -> bool:
    """Under `updateHubAssignment: false` an assigned device keeps its hub."""
    return current_place(previous) is not None and not policy.update_hub_assignment


def plan(
    previous: DeviceRegistrationState | None,
    policy: ReprovisionPolicy,
    hub: str,
    initial_twin: dict[str, Any] | None,
) -> Plan:
    """The substatus DPS reports and the twin to apply.

    The initial twin is applied on the first assignment and when a device moves under
    "reprovision and reset"; a move under "migrate" carries the twin from the old hub, and a
    re-registration on the same hub (or one kept by "never reprovision") leaves it alone.
    """
    place = current_place(previous)
    if place is None:
        return Plan("initialAssignment", initial_twin or {})
    if stays_put(previous, policy):
        return Plan("initialAssignment", None)
    if place.hub.lower() == hub.lower():
        return Plan("reprovisionedToInitialAssignment", None)
    if policy.migrate_device_data:
        return Plan("deviceDataMigrated", None, carry_twin_from=place, leave=place)
    return Plan("deviceDataReset", initial_twin or {}, leave=place)
