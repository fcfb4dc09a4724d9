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
Prepare = Callable[[LinkedHub], LinkedHub]


@dataclass(frozen=True)
class _Kind:
    build: Builder
    prepare: Prepare | None


class ConnectorFactory:
    """The connector kinds devprov knows, each with how to build one and check its settings."""

    def __init__(self) -> None:
        self._kinds: dict[str, _Kind] = {}

    def register(self, kind: str, build: Builder, prepare: Prepare | None = None) -> None:
        """`prepare` checks a hub's settings when it is linked, and may complete them (a
        built-in hub makes its own connection string)."""
        self._kinds[kind] = _Kind(build, prepare)

    @property
    def kinds(self) -> list[str]:
        return sorted(self._kinds)

    def prepare(self, hub: LinkedHub) -> LinkedHub:
        """The hub's settings, checked and completed when it is linked; settings no connector
        could use are refused then (400004), not at the first registration."""
        kind = self._kinds.get(hub.connector)
        if kind is None:
            raise bad_request(
                f"connector: {hub.connector!r} is not a hub connector; use one of {self.kinds}."
            )
        return kind.prepare(hub) if kind.prepare is not None else hub

    def build(self, hub: LinkedHub) -> HubConnector:
        self.prepare(hub)
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
