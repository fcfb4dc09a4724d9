"""The devices connected to this process, one connection each: a new one drops the old."""

from __future__ import annotations

from devprov.hub.ports import DeviceLink


def _key(hub: str, device_id: str) -> str:
    return f"{hub.lower()}/{device_id.lower()}"


class Presence:
    """Which connection serves which device (IoT Hub keeps one per device id, DOC-MQTT)."""

    def __init__(self) -> None:
        self._links: dict[str, DeviceLink] = {}

    def attach(self, hub: str, device_id: str, link: DeviceLink) -> None:
        old = self._links.get(_key(hub, device_id))
        self._links[_key(hub, device_id)] = link
        if old is not None and old is not link:
            old.disconnect("the same device connected again")

    def detach(self, hub: str, device_id: str, link: DeviceLink) -> None:
        if self._links.get(_key(hub, device_id)) is link:
            del self._links[_key(hub, device_id)]

    def link(self, hub: str, device_id: str) -> DeviceLink | None:
        return self._links.get(_key(hub, device_id))

    def disconnect(self, hub: str, device_id: str, reason: str) -> None:
        link = self._links.pop(_key(hub, device_id), None)
        if link is not None:
            link.disconnect(reason)

    def __len__(self) -> int:
        return len(self._links)
