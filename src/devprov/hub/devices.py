"""The built-in hubs' device documents in the store, keyed by hub and device id without case."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from devprov.domain.clock import new_etag
from devprov.domain.errors import precondition_failed
from devprov.domain.hub_identities import HubError, device_not_found
from devprov.domain.records import Kind, Put, RecordStore, StoredDocument

Document = dict[str, Any]


def device_key(hub: str, device_id: str) -> str:
    return f"{hub.lower()}/{device_id.lower()}"


def etag_matches(if_match: str | None, etag: str) -> bool:
    """If-Match arrives bare, quoted, or as `"*"` (both service SDKs quote the asterisk)."""
    if if_match is None:
        return True
    value = if_match.strip().removeprefix("W/").strip('"')
    return value in ("*", etag)


class HubDevices:
    """Reads and atomic changes of device documents."""

    def __init__(self, store: RecordStore) -> None:
        self.store = store

    async def get(self, hub: str, device_id: str) -> Document | None:
        stored = await self.store.get(Kind.HUB_DEVICE, device_key(hub, device_id))
        return stored.document if stored else None

    async def require(self, hub: str, device_id: str) -> Document:
        device = await self.get(hub, device_id)
        if device is None:
            raise device_not_found(device_id)
        return device

    async def list(self, hub: str, limit: int | None = None) -> list[Document]:
        rows = await self.store.page(Kind.HUB_DEVICE, limit=limit, where={"hub_key": hub.lower()})
        return [row.document for row in rows]

    async def put(self, hub: str, device: Document) -> None:
        """Write a device whatever is stored (merged with other writes into one commit)."""
        key = device_key(hub, device["deviceId"])
        columns = {"hub_key": hub.lower()}
        await self.store.write([Put(Kind.HUB_DEVICE, key, device["etag"], device, columns)])

    async def change(
        self, hub: str, device_id: str, change: Callable[[Document | None], Document | None]
    ) -> Document | None:
        """Write what `change` makes of the device (None: no write), in one transaction; the
        document written, or None."""
        key = device_key(hub, device_id)

        def put(current: StoredDocument | None) -> Put | None:
            changed = change(current.document if current else None)
            if changed is None:
                return None
            columns = {"hub_key": hub.lower()}
            return Put(Kind.HUB_DEVICE, key, changed.get("etag") or new_etag(), changed, columns)

        written = await self.store.update(Kind.HUB_DEVICE, key, put)
        return dict(written.document) if written else None

    async def delete(self, hub: str, device_id: str, if_match: str | None = None) -> None:
        """Remove a device; a stale If-Match is 412, an unknown device 404."""
        device = await self.require(hub, device_id)
        if not etag_matches(if_match, device["etag"]):
            raise _precondition_failed()
        await self.store.delete(Kind.HUB_DEVICE, device_key(hub, device_id))


def _precondition_failed() -> HubError:
    error = precondition_failed()
    return HubError(412, "PreconditionFailed", 412001, error.message)
