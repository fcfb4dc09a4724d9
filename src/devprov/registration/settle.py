"""Cleaning up after registrations that did not finish: a device left on a hub its record does
not name, and operations left `assigning`.

A process killed mid-registration leaves its claim (claim.py) behind, and maybe the device's
identity on the hub it was placing it on, and its operation `assigning`. Whoever next takes the
claim (the device registering again, or the sweep that every process runs) removes the device
from every hub no registration record names it on; the sweep also answers every operation still
`assigning` past the deadline: with the record, if the registration got that far, else failed
(500101), so a device polling it gets an answer.
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid

from devprov.domain.errors import REGISTRATION_INTERRUPTED
from devprov.domain.models import LinkedHub
from devprov.hubs.connector import ConnectorSource
from devprov.protocol.dps import operation_status
from devprov.registration.claim import Claiming
from devprov.registration.ports import Directory, Operations, RegistrationRecords

log = logging.getLogger(__name__)


class Settling:
    """Removes stray identities and answers orphaned operations."""

    def __init__(
        self,
        directory: Directory,
        connectors: ConnectorSource,
        records: RegistrationRecords,
        operations: Operations,
        claiming: Claiming,
    ) -> None:
        self.directory = directory
        self.connectors = connectors
        self.records = records
        self.operations = operations
        self.claiming = claiming

    async def clear(self, device_id: str, keep: str | None = None) -> bool:
        """Remove `device_id` from every linked hub but `keep` on which no registration record
        puts it; False if a hub could not be asked (the sweep tries again later)."""
        await self.directory.refresh()
        cleared = True
        for hub in await self.directory.linked_hubs():
            if keep is not None and hub.host_name.lower() == keep.lower():
                continue
            if await self.records.holders(hub.host_name, device_id):
                continue
            cleared = await self._remove(hub, device_id) and cleared
        return cleared

    async def _remove(self, hub: LinkedHub, device_id: str) -> bool:
        try:
            connector = await self.connectors.for_hub(hub)
            await connector.remove_device(hub, device_id)
        except Exception as exc:
            log.warning("could not remove the stray %s from %s: %s", device_id, hub.host_name, exc)
            return False
        return True

    async def sweep(self) -> tuple[int, int]:
        """One pass: settle expired claims, answer orphaned operations; how many of each."""
        claims = 0
        for registration_id, device_id in await self.claiming.claims.expired():
            owner = f"sweep-{uuid.uuid4().hex}"
            claim = await self.claiming.claims.take(
                registration_id, device_id, owner, self.claiming.seconds
            )
            if claim is None:  # a registration (or another sweep) took it meanwhile
                continue
            settled = True
            for device in dict.fromkeys((device_id, *claim.stale_devices)):
                settled = await self.clear(device) and settled
            await self.claiming.claims.release(claim, settled)
            claims += settled
        answered = 0
        cutoff = time.time() - self.claiming.seconds
        for operation_id, registration_id, etag in await self.operations.orphaned(cutoff):
            record = await self.records.answered_by(registration_id, operation_id)
            if record is not None:
                status = operation_status(operation_id, record["status"], record)
            else:
                status = operation_status(
                    operation_id,
                    "failed",
                    {
                        "registrationId": registration_id,
                        "status": "failed",
                        "errorCode": REGISTRATION_INTERRUPTED,
                        "errorMessage": "The registration was interrupted (devprov stopped"
                        " while assigning); register again.",
                    },
                )
            answered += await self.operations.settle(operation_id, etag, status)
        return claims, answered

    async def sweep_forever(self, interval: float) -> None:
        """Sweep now (a restart after a crash is answered at once) and every `interval` s."""
        while True:
            try:
                claims, answered = await self.sweep()
                if claims or answered:
                    log.info(
                        "settled %d unfinished registrations and %d orphaned operations",
                        claims,
                        answered,
                    )
            except Exception:
                log.exception("could not settle unfinished registrations")
            await asyncio.sleep(interval)
