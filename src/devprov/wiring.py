"""The one place that builds devprov from its parts, runs it, and takes it down in order.

Every part that needs tearing down registers its own teardown on one `AsyncExitStack` as it is
built, so a start that fails half-way closes what it had opened, and a stop closes everything,
newest first.
"""

from __future__ import annotations

import asyncio
import logging
import multiprocessing
import os
import signal
import time
from collections.abc import Iterable, Sequence
from contextlib import AsyncExitStack
from dataclasses import dataclass

from aiohttp import web

from devprov.admin import Admin
from devprov.allocation.allocator import Allocators
from devprov.allocation.builtin import built_in_allocators
from devprov.allocation.webhook import WebhookAllocator, WebhookClient
from devprov.domain.records import Kind
from devprov.hubs import registry
from devprov.hubs.factory import ConnectorFactory, Connectors
from devprov.instance import Instance, ensure_instance
from devprov.process import raise_file_limit, trim_forever
from devprov.registration.allocate import AllocationStage
from devprov.registration.attest import Attestation
from devprov.registration.observe import Observer, Observers
from devprov.registration.place import Placement
from devprov.registration.provision import Provisioning
from devprov.registration.service import RegistrationService, RegistrationSettings
from devprov.server.app import build_app
from devprov.server.device_api import DeviceApi
from devprov.server.dps_mqtt import DpsMqtt
from devprov.server.mqtt_listener import PACKET_OVERHEAD_BYTES, MqttTlsProtocol
from devprov.server.mqtt_session import MqttApplication
from devprov.server.routing import Router
from devprov.server.service_api import ServiceApi
from devprov.server.tls import (
    TlsFiles,
    ensure_certificates,
    server_context,
    server_names,
    small_tls_buffers,
)
from devprov.server.trust import ClientTrust
from devprov.settings import Settings
from devprov.store.database import Store
from devprov.store.directory import CachedDirectory
from devprov.store.registrations import StoredChallenges, StoredOperations, StoredRegistrations
from devprov.store.schema import migrate

log = logging.getLogger(__name__)
OPERATION_RETENTION_SECONDS = 24 * 3600


def prepare(settings: Settings) -> tuple[Instance, TlsFiles]:
    """Create or update the instance file and TLS material for these settings."""
    instance = ensure_instance(
        settings.data_dir,
        host=settings.host,
        https_port=settings.https_port,
        mqtt_port=settings.mqtt_port,
        database=settings.db,
        names=settings.names or None,
    )
    pair = settings.tls_pair()
    if pair is not None:
        tls = TlsFiles(pair[0], pair[0], pair[1])
    else:
        tls = ensure_certificates(
            settings.data_dir / "tls", server_names(instance.host, instance.names)
        )
    return instance, tls


def connector_factory(store: Store) -> ConnectorFactory:
    """Every hub connector kind devprov can build."""
    factory = ConnectorFactory()
    factory.register(registry.KIND, lambda _hub: registry.RegistryConnector(store))
    return factory


def registration_service(
    store: Store,
    id_scope: str,
    connectors: Connectors,
    webhooks: WebhookClient,
    *,
    fast_path_seconds: float = 1.5,
    observers: Iterable[Observer] = (),
) -> RegistrationService:
    """The registration service and its stages over a store."""
    directory = CachedDirectory(store)
    allocators = Allocators({**built_in_allocators(), "custom": WebhookAllocator(webhooks)})
    records = StoredRegistrations(store)
    observing = Observers(observers)
    return RegistrationService(
        RegistrationSettings(id_scope, fast_path_seconds=fast_path_seconds),
        Attestation(id_scope, directory, StoredChallenges(store)),
        Provisioning(
            directory, AllocationStage(allocators), Placement(connectors), records, observing
        ),
        records,
        StoredOperations(store),
        observing,
    )


@dataclass
class Devprov:
    """A running devprov: its parts, and the stack that takes them down."""

    instance: Instance
    tls: TlsFiles
    store: Store
    registrations: RegistrationService
    stack: AsyncExitStack

    async def close(self) -> None:
        await self.stack.aclose()


async def start(settings: Settings, observers: Iterable[Observer] = ()) -> Devprov:
    """Migrate the store, then build every part and listen."""
    instance, tls = prepare(settings)
    await asyncio.to_thread(migrate, instance.database)
    async with AsyncExitStack() as stack:
        store = Store.connect(instance.database)
        stack.push_async_callback(store.close)
        webhooks = WebhookClient(settings.webhook_timeout)
        stack.push_async_callback(webhooks.close)
        factory = connector_factory(store)
        connectors = Connectors(factory)
        stack.push_async_callback(connectors.close)
        registrations = registration_service(
            store,
            instance.id_scope,
            connectors,
            webhooks,
            fast_path_seconds=settings.fast_path_seconds,
            observers=observers,
        )
        stack.push_async_callback(registrations.close)
        small_tls_buffers()
        context = server_context(tls.cert, tls.key)
        trust = ClientTrust(context, store)
        await trust.refresh()
        trust.start()
        stack.push_async_callback(trust.stop)
        max_packet_bytes = settings.max_message_bytes + PACKET_OVERHEAD_BYTES
        applications: Sequence[MqttApplication] = [
            DpsMqtt(registrations, settings.max_message_bytes)
        ]
        known_hosts = {name.lower() for name in server_names(instance.host, instance.names)}
        known_hosts.add(instance.host_name.lower())
        router = Router()
        ServiceApi(
            Admin(store, factory.check),
            instance.policy,
            known_hosts,
            registry.RegistryConnector(store),
            trust.refresh,
        ).add_routes(router)
        DeviceApi(
            registrations, settings.max_message_bytes, applications, max_packet_bytes
        ).add_routes(router)
        shared = settings.workers > 1  # several processes accept on the same ports
        runner = web.AppRunner(build_app(router), access_log=None)
        await runner.setup()
        stack.push_async_callback(runner.cleanup)
        site = web.TCPSite(
            runner,
            host=instance.host,
            port=instance.https_port,
            ssl_context=context,
            reuse_address=True,
            reuse_port=shared,
        )
        await site.start()
        mqtt_server = await asyncio.get_running_loop().create_server(
            lambda: MqttTlsProtocol(applications, max_packet_bytes),
            host=instance.host,
            port=instance.mqtt_port,
            ssl=context,
            reuse_address=True,
            reuse_port=shared,
        )
        stack.callback(mqtt_server.close)
        log.info(
            "devprov serving id scope %s on https://%s:%d and mqtts://%s:%d",
            instance.id_scope,
            instance.host_name,
            instance.https_port,
            instance.host_name,
            instance.mqtt_port,
        )
        return Devprov(instance, tls, store, registrations, stack.pop_all())
    raise AssertionError("unreachable")  # pragma: no cover - the block returns or raises


async def prune_operations_forever(store: Store) -> None:
    """Forget the results of slow registrations a day after they were written: a device polls
    within seconds, and the registration record keeps the outcome."""
    while True:
        try:
            pruned = await store.prune(Kind.OPERATION, time.time() - OPERATION_RETENTION_SECONDS)
            if pruned:
                log.info("pruned %d finished operations", pruned)
        except Exception:
            log.exception("could not prune old operations")
        await asyncio.sleep(3600)


async def serve_forever(settings: Settings) -> None:
    raise_file_limit()
    devprov = await start(settings)
    background = [
        asyncio.create_task(trim_forever()),
        asyncio.create_task(prune_operations_forever(devprov.store)),
    ]
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    try:
        await stop.wait()
    finally:
        for task in background:
            task.cancel()
        await devprov.close()


def configure_logging(level: str) -> None:
    logging.basicConfig(
        level=level.upper(), format="%(asctime)s %(process)d %(levelname)s %(name)s: %(message)s"
    )


def run(settings: Settings) -> None:
    """Serve until SIGINT/SIGTERM, in this process or in `settings.workers` processes.

    Workers share the ports (SO_REUSEPORT: the kernel spreads connections over them) and the
    store; everything a later request may need (operations, challenges, caches' revisions)
    lives in the store, so any worker can answer any poll. The schema is migrated once, here,
    before they start."""
    if settings.workers <= 1:
        asyncio.run(serve_forever(settings))
        return
    instance, _ = prepare(settings)
    migrate(instance.database)
    context = multiprocessing.get_context("spawn")
    workers = [
        context.Process(target=_worker, args=(settings,), name=f"devprov-worker-{number}")
        for number in range(settings.workers)
    ]
    for worker in workers:
        worker.start()

    def stop(_signum: int, _frame: object) -> None:
        for worker in workers:
            if worker.is_alive():
                os.kill(worker.pid or 0, signal.SIGTERM)

    signal.signal(signal.SIGINT, stop)
    signal.signal(signal.SIGTERM, stop)
    for worker in workers:
        worker.join()


def _worker(settings: Settings) -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the parent turns Ctrl-C into SIGTERM
    configure_logging(settings.log_level)
    asyncio.run(serve_forever(settings))
