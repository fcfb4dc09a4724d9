"""Building, starting and closing the connector of each linked hub from the hub's settings."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from dataclasses import dataclass

from devprov.domain.errors import bad_request
from devprov.domain.models import LinkedHub
from devprov.hubs.connector import HubConnector

log = logging.getLogger(__name__)
Builder = Callable[[LinkedHub], HubConnector]
Check = Callable[[LinkedHub], None]


@dataclass(frozen=True)
class _Kind:
    build: Builder
    check: Check | None


class ConnectorFactory:
    """The connector kinds devprov knows, each with how to build one and check its settings."""

    def __init__(self) -> None:
        self._kinds: dict[str, _Kind] = {}

    def register(self, kind: str, build: Builder, check: Check | None = None) -> None:
        self._kinds[kind] = _Kind(build, check)

    @property
    def kinds(self) -> list[str]:
        return sorted(self._kinds)

    def check(self, hub: LinkedHub) -> None:
        """Refuse settings no connector could use, when the hub is linked (400004)."""
        kind = self._kinds.get(hub.connector)
        if kind is None:
            raise bad_request(
                f"connector: {hub.connector!r} is not a hub connector; use one of {self.kinds}."
            )
        if kind.check is not None:
            kind.check(hub)

    def build(self, hub: LinkedHub) -> HubConnector:
        self.check(hub)
        return self._kinds[hub.connector].build(hub)


@dataclass
class _Running:
    settings: tuple[str, str | None]
    connector: HubConnector


class Connectors:
    """The running connector of each linked hub.

    A connector is built and started when its hub is first used, rebuilt when the hub's
    connector settings change (the old one is closed), and all are closed, newest first, by
    `close`."""

    def __init__(self, factory: ConnectorFactory) -> None:
        self.factory = factory
        self._running: dict[str, _Running] = {}
        self._lock = asyncio.Lock()

    async def for_hub(self, hub: LinkedHub) -> HubConnector:
        key = hub.host_name.lower()
        settings = (hub.connector, hub.connection_string)
        running = self._running.get(key)
        if running is not None and running.settings == settings:
            return running.connector
        async with self._lock:  # one build per change, however many registrations wait
            running = self._running.get(key)
            if running is not None and running.settings == settings:
                return running.connector
            connector = self.factory.build(hub)
            await connector.start()
            self._running[key] = _Running(settings, connector)
        if running is not None:
            await self._close(running.connector)
        return connector

    async def close(self) -> None:
        running, self._running = list(self._running.values()), {}
        for entry in reversed(running):
            await self._close(entry.connector)

    @staticmethod
    async def _close(connector: HubConnector) -> None:
        try:
            await connector.close()
        except Exception:
            log.exception("could not close hub connector %s", type(connector).__name__)
