"""The one place that builds devprov from its parts, runs it, and takes it down in order.

Every part that needs tearing down registers its own teardown on one `AsyncExitStack` as it is
built, so a start that fails half-way closes what it had opened, and a stop closes everything,
newest first.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import multiprocessing
import os
import signal
import time
from collections.abc import Awaitable, Callable, Iterable, Sequence
from contextlib import AsyncExitStack
from dataclasses import dataclass
from functools import partial
from pathlib import Path

from aiohttp import web

from devprov.admin import Admin
from devprov.allocation.allocator import Allocators
from devprov.allocation.builtin import built_in_allocators
from devprov.allocation.custom import CustomAllocator
from devprov.allocation.exchanges import ExchangeLog, ExchangeObserver, ObservedExchanges
from devprov.allocation.functions import InProcessAllocators, parse_allocator_specs
from devprov.allocation.webhook import WebhookClient
from devprov.domain.ids import id_key
from devprov.domain.models import LinkedHub
from devprov.domain.records import Kind
from devprov.hub import connector as builtin
from devprov.hub.devices import HubDevices
from devprov.hub.presence import Presence
from devprov.hub.service import HubService
from devprov.hubs import azure_iothub, http_hub, mosquitto
from devprov.hubs.connector import ConnectorError, Finding
from devprov.hubs.factory import ConnectorFactory, Connectors
from devprov.instance import Instance, ensure_instance
from devprov.issuing_cas import IssuingCas
from devprov.log_format import configure_logging
from devprov.process import raise_file_limit, trim_forever
from devprov.registration.allocate import AllocationStage
from devprov.registration.attest import Attestation
from devprov.registration.claim import Claiming
from devprov.registration.issue import Issuance
from devprov.registration.observe import Observer, Observers
from devprov.registration.place import Placement
from devprov.registration.ports import CredentialIssuers
from devprov.registration.provision import Provisioning
from devprov.registration.service import RegistrationService, RegistrationSettings
from devprov.registration.settle import Settling
from devprov.server.activity_log import RegistrationLog
from devprov.server.amqp_listener import AmqpTlsProtocol
from devprov.server.app import build_app
from devprov.server.console import Activity, Console
from devprov.server.device_api import DeviceApi
from devprov.server.dps_amqp import DpsAmqp
from devprov.server.dps_mqtt import DpsMqtt
from devprov.server.health import add_health_routes
from devprov.server.hub_api import HubApi
from devprov.server.hub_mqtt import HubMqtt
from devprov.server.metrics import Gauges, Metrics, MetricsAccess, add_metrics_route
from devprov.server.mqtt_listener import MqttTlsProtocol
from devprov.server.mqtt_session import MqttApplication, OpenSessions
from devprov.server.openapi import add_openapi_route
from devprov.server.routing import Router
from devprov.server.service_api import ServiceApi
from devprov.server.tls import (
    ServerCertificate,
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
from devprov.store.exchanges import StoredExchanges
from devprov.store.hub_messages import StoredMessageLog
from devprov.store.registrations import (
    StoredChallenges,
    StoredClaims,
    StoredOperations,
    StoredRegistrations,
)
from devprov.store.schema import head_revision, migrate

log = logging.getLogger(__name__)
OPERATION_RETENTION_SECONDS = 24 * 3600


def prepare(settings: Settings) -> tuple[Instance, TlsFiles]:
    """Create or update the instance file and TLS material for these settings."""
    instance = ensure_instance(
        settings.data_dir,
        host=settings.host,
        https_port=settings.https_port,
        mqtt_port=settings.mqtt_port,
        amqp_port=settings.amqp_port,
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


def connector_factory(
    store: Store, presence: Presence | None = None, timeout: float = 10.0
) -> ConnectorFactory:
    """Every hub connector kind devprov can build (`presence`: the devices connected to this
    process, which a built-in hub disconnects when DPS moves them away; `timeout`: how long an
    external hub's call may take, retries included)."""
    devices, connected = HubDevices(store), presence or Presence()
    factory = ConnectorFactory()
    factory.register(
        builtin.KIND, lambda _hub: builtin.BuiltinConnector(devices, connected), builtin.prepare
    )
    for kind in (azure_iothub, mosquitto, http_hub):
        factory.register(kind.KIND, partial(kind.build, timeout=timeout), kind.prepare)
    return factory


async def check_hub(store: Store, host_name: str, seconds: float = 10.0) -> list[Finding] | None:
    """What `devprov hub check` reports: the linked hub's connector built, started and asked
    whether it can reach its hub and do its work (None when no such hub is linked)."""
    stored = await store.get(Kind.LINKED_HUB, id_key(host_name))
    if stored is None:
        return None
    hub = LinkedHub.model_validate(stored.document)
    connector = connector_factory(store, timeout=seconds).build(hub)
    try:
        await connector.start()
        return await connector.check(hub)
    except ConnectorError as error:
        return [Finding(f"start the {hub.connector} connector", False, str(error))]
    finally:
        await connector.close()


async def link_default_hub(store: Store, factory: ConnectorFactory, name: str) -> None:
    """Link a built-in hub named `name` when no hub is linked yet (`make run`'s first start)."""
    admin = Admin(store, factory.prepare)
    if not await admin.list_linked_hubs():
        await admin.put_linked_hub(name, {"connector": builtin.KIND})
        log.info("linked the built-in IoT hub %s", name)


def tls_names(instance: Instance, hubs: Sequence[LinkedHub]) -> list[str]:
    """Every name the server certificate must carry: devprov's own, and its built-in hubs'."""
    own = [*instance.names, *(hub.host_name for hub in hubs if hub.connector == builtin.KIND)]
    return server_names(instance.host, own)


def registration_service(
    store: Store,
    id_scope: str,
    connectors: Connectors,
    webhooks: WebhookClient,
    *,
    functions: InProcessAllocators | None = None,
    exchanges: ExchangeLog | None = None,
    issuers: CredentialIssuers | None = None,
    fast_path_seconds: float = 1.5,
    deadline_seconds: float = 60.0,
    observers: Iterable[Observer] = (),
) -> RegistrationService:
    """The registration service and its stages over a store."""
    directory = CachedDirectory(store)
    custom = CustomAllocator(webhooks, functions, exchanges)
    allocators = Allocators({**built_in_allocators(), "custom": custom})
    records = StoredRegistrations(store)
    operations = StoredOperations(store)
    observing = Observers(observers)
    claiming = Claiming(StoredClaims(store), deadline_seconds)
    settling = Settling(CachedDirectory(store), connectors, records, operations, claiming)
    return RegistrationService(
        RegistrationSettings(
            id_scope, fast_path_seconds=fast_path_seconds, deadline_seconds=deadline_seconds
        ),
        Attestation(id_scope, directory, StoredChallenges(store)),
        Provisioning(
            directory,
            AllocationStage(allocators),
            Placement(connectors),
            records,
            observing,
            claiming,
            settling,
            deadline_seconds,
        ),
        records,
        operations,
        observing,
        Issuance(issuers),
    )


@dataclass
class Devprov:
    """A running devprov: its parts, and the stack that takes them down."""

    instance: Instance
    tls: TlsFiles
    store: Store
    registrations: RegistrationService
    hubs: HubService
    metrics: Metrics
    stack: AsyncExitStack
    data_dir: Path

    async def close(self) -> None:
        await self.stack.aclose()


async def start(settings: Settings, observers: Iterable[Observer] = ()) -> Devprov:
    """Migrate the store, then build every part and listen."""
    instance, tls = prepare(settings)
    await asyncio.to_thread(migrate, instance.database)
    async with AsyncExitStack() as stack:
        store = Store.connect(instance.database)
        stack.push_async_callback(store.close)
        metrics, activity = Metrics(), Activity()
        watching: list[Observer] = [*observers, RegistrationLog()]
        exchanged: list[ExchangeObserver] = []
        if settings.metrics != "off":  # off: not even counted (the benchmark's baseline)
            watching.append(metrics.observe)
            exchanged.append(metrics.webhook)
            store.on_batch = metrics.batch
        if settings.console:
            watching.append(activity.observe)
            exchanged.append(activity.webhook)
        webhooks = WebhookClient(
            settings.webhook_timeout,
            secret=settings.webhook_secret,
            retries=settings.webhook_retries,
        )
        stack.push_async_callback(webhooks.close)
        functions = InProcessAllocators(
            parse_allocator_specs(settings.allocators), settings.webhook_timeout
        )
        presence = Presence()
        factory = connector_factory(store, presence, settings.hub_connector_timeout)
        if settings.default_hub:
            await link_default_hub(store, factory, settings.default_hub)
        connectors = Connectors(factory)
        stack.push_async_callback(connectors.close)
        registrations = registration_service(
            store,
            instance.id_scope,
            connectors,
            webhooks,
            functions=functions,
            exchanges=ObservedExchanges(
                StoredExchanges(store, settings.exchange_log_size), exchanged
            ),
            issuers=IssuingCas(store, settings.data_dir),
            fast_path_seconds=settings.fast_path_seconds,
            deadline_seconds=settings.registration_deadline,
            observers=watching,
        )
        stack.push_async_callback(registrations.close)
        sweep = registrations.provisioning.settling.sweep_forever(_sweep_interval(settings))
        stack.push_async_callback(_cancelled, asyncio.create_task(sweep))
        messages = StoredMessageLog(store, settings.hub_message_retention)
        await messages.start()
        stack.push_async_callback(messages.close)
        hubs = HubService(CachedDirectory(store), HubDevices(store), messages, presence)
        small_tls_buffers()
        own_tls = None if settings.tls_pair() else settings.data_dir / "tls"
        context = server_context(tls.cert, tls.key, own_tls)
        certificate = ServerCertificate(own_tls)

        async def cover_hub_names() -> None:
            certificate.cover(context, tls_names(instance, await hubs.hubs()))

        await cover_hub_names()
        trust = ClientTrust(context, store)
        await trust.refresh()
        trust.start()
        stack.push_async_callback(trust.stop)
        stack.push_async_callback(_cancelled, asyncio.create_task(_every(1.0, cover_hub_names)))

        async def after_write() -> None:  # a change through this process's API applies at once
            await trust.refresh()
            await cover_hub_names()

        dps = DpsMqtt(registrations, settings.max_message_bytes)
        applications: Sequence[MqttApplication] = [HubMqtt(hubs), dps]
        open_sessions = OpenSessions()
        known_hosts = {name.lower() for name in server_names(instance.host, instance.names)}
        known_hosts.add(instance.host_name.lower())
        router = Router()
        add_health_routes(router, store.schema_revision, head_revision())
        add_metrics_route(router, metrics, MetricsAccess(settings.metrics, settings.metrics_token))
        add_openapi_route(router)
        admin = Admin(store, factory.prepare)
        ServiceApi(admin, instance.policy, known_hosts, hubs, after_write).add_routes(router)
        HubApi(hubs).add_routes(router)
        if settings.console:
            Console(
                admin,
                lambda: instance.policies,
                activity,
                id_scope=instance.id_scope,
                connector_kinds=factory.kinds,
                after_write=after_write,
            ).add_routes(router)
        dps_amqp = DpsAmqp(registrations, settings.max_message_bytes)
        DeviceApi(
            registrations,
            settings.max_message_bytes,
            applications,
            dps.max_packet_bytes,
            open_sessions,
            dps_amqp,
        ).add_routes(router)
        shared = settings.workers > 1  # several processes accept on the same ports
        runner = web.AppRunner(build_app(router), access_log=None)
        await runner.setup()
        stack.push_async_callback(runner.cleanup)
        stack.callback(activity.feed.close)  # open live feeds end first, or cleanup waits
        metrics.watch(Gauges(_connections(runner, open_sessions), lambda: registrations.in_flight))
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
            lambda: MqttTlsProtocol(applications, dps.max_packet_bytes, open_sessions),
            host=instance.host,
            port=instance.mqtt_port,
            ssl=context,
            reuse_address=True,
            reuse_port=shared,
        )
        stack.callback(mqtt_server.close)
        amqp_server = await asyncio.get_running_loop().create_server(
            lambda: AmqpTlsProtocol(dps_amqp),
            host=instance.host,
            port=instance.amqp_port,
            ssl=context,
            reuse_address=True,
            reuse_port=shared,
        )
        stack.callback(amqp_server.close)
        log.info(
            "devprov serving id scope %s on https://%s:%d, mqtts://%s:%d and amqps://%s:%d",
            instance.id_scope,
            instance.host_name,
            instance.https_port,
            instance.host_name,
            instance.mqtt_port,
            instance.host_name,
            instance.amqp_port,
        )
        return Devprov(
            instance, tls, store, registrations, hubs, metrics, stack.pop_all(), settings.data_dir
        )
    raise AssertionError("unreachable")  # pragma: no cover - the block returns or raises


def _connections(runner: web.AppRunner, sessions: OpenSessions) -> Callable[[], dict[str, int]]:
    """Open connections by transport: every HTTPS one (WebSocket ones included), and the MQTT
    sessions over TLS and over WebSocket."""

    def count() -> dict[str, int]:
        server = runner.server
        return {"https": len(server.connections) if server else 0, **sessions.by_transport}

    return count


async def _every(seconds: float, work: Callable[[], Awaitable[None]]) -> None:
    while True:
        await asyncio.sleep(seconds)
        try:
            await work()
        except Exception:
            log.exception("periodic %s failed", getattr(work, "__name__", work))


def _sweep_interval(settings: Settings) -> float:
    """How often each process looks for registrations a stopped process left unfinished: a
    fraction of the deadline, so they are answered soon after their claims expire."""
    return min(30.0, max(0.5, settings.registration_deadline / 4))


async def _cancelled(task: asyncio.Task[None]) -> None:
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task


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
    configure_logging(settings.log_level, settings.log_format)
    asyncio.run(serve_forever(settings))
