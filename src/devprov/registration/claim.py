"""One registration per registration id at a time: an in-process lock, then a claim in the store.

Within a process, registrations of one id queue on an asyncio lock, so the store is asked once
each; across processes (`serve --workers N`) and nodes (several devprov on one PostgreSQL) the
claim row is what serializes them: a registration that finds another live claim waits and asks
again. A claim lasts the registration deadline plus a grace (the deadline again, at most 10 s),
so one left by a killed process expires and is taken over (its device cleaned up, settle.py).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from devprov.domain.claims import Claim
from devprov.domain.ids import id_key
from devprov.registration.ports import Claims

CLAIM_GRACE_SECONDS = 10.0  # beyond the deadline (at most): to record one that ran out of time
FIRST_WAIT_SECONDS = 0.01
LONGEST_WAIT_SECONDS = 0.25


class Claiming:
    """Hands out claims, waiting for the one holding an id to let it go."""

    def __init__(self, claims: Claims, deadline_seconds: float) -> None:
        self.claims = claims
        self.seconds = deadline_seconds + min(CLAIM_GRACE_SECONDS, deadline_seconds)
        self._locks: dict[str, asyncio.Lock] = {}
        self._waiting: dict[str, int] = {}

    @asynccontextmanager
    async def queue(self, registration_id: str) -> AsyncIterator[None]:
        """This process's turn for `registration_id` (the lock is forgotten when unused)."""
        key = id_key(registration_id)
        lock = self._locks.setdefault(key, asyncio.Lock())
        self._waiting[key] = self._waiting.get(key, 0) + 1
        try:
            async with lock:
                yield
        finally:
            self._waiting[key] -= 1
            if not self._waiting[key]:
                del self._waiting[key], self._locks[key]

    async def take(self, registration_id: str, device_id: str, owner: str) -> Claim:
        """The claim, once no other process or node holds either id (the caller bounds the
        wait with its deadline)."""
        wait = FIRST_WAIT_SECONDS
        while True:
            claim = await self.claims.take(registration_id, device_id, owner, self.seconds)
            if claim is not None:
                return claim
            await asyncio.sleep(wait)
            wait = min(wait * 2, LONGEST_WAIT_SECONDS)
