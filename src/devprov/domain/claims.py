"""A registration claim: the right to provision one registration id and its device id now."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Claim:
    """The right to provision one registration id (and its device id) now, across processes.

    `stale_devices`: the device ids of claims taken over from a registration that did not
    finish (its process was killed, or it ran out of time): they may be on a hub their
    record does not name."""

    registration_id: str
    device_id: str
    owner: str
    stale_devices: tuple[str, ...] = ()
