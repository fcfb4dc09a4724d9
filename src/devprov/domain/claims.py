"""A registration claim: the right to provision one registration id and its device id now."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Claim:
    """The right to provision one registration id (and its device id) now, across processes.

    `stale_devices`: the device ids of claims taken over from a registration that did not
    finish (its process was killed, or it ran out of time): they may be on a hub their
    record does not name.
    What the store held when the claim was taken, read under it (no other registration of
    either id can change it while the claim lasts): `record`, the registration's record, and
    `device_holders`, the (registration key, hub key) of every record naming the device id."""

    registration_id: str
    device_id: str
    owner: str
    stale_devices: tuple[str, ...] = ()
    record: dict[str, Any] | None = None
    device_holders: tuple[tuple[str, str], ...] = ()

    def holders_on(self, hub: str) -> list[str]:
        """The registration keys whose records put this claim's device id on `hub`."""
        return [key for key, on in self.device_holders if on == hub.lower()]
