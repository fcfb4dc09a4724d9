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
from dataclasses import dataclass, field
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
from devprov.attestation.sas import DEFAULT_MAX_LIFETIME_SECONDS
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
from devprov.instance import Instance, ensure_instance, save_instance
from devprov.issuing_cas import IssuingCas
from devprov.keyring import load_sealer
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
from devprov.server.amqp_session import AmqpLimits
from devprov.server.app import build_app
from devprov.server.console import Activity, Console
from devprov.server.device_api import DeviceApi
from devprov.server.dps_amqp import DpsAmqp
from devprov.server.dps_mqtt import DpsMqtt
from devprov.server.guard import Gate, GuardedProtocol, ResourceErrors
from devprov.server.health import add_health_routes
from devprov.server.http import HttpGuarded
from devprov.server.hub_api import HubApi
from devprov.server.hub_mqtt import HubMqtt
from devprov.server.listen import serve
from devprov.server.metrics import Gauges, Metrics, MetricsAccess, add_metrics_route
from devprov.server.mqtt_listener import MqttTlsProtocol
from devprov.server.mqtt_session import MqttApplication, OpenSessions, SessionLimits
from devprov.server.openapi import add_openapi_route
from devprov.server.routing import Router
from devprov.server.service_api import ServiceApi
from devprov.server.tls import (
    ServerCertificate,
    TlsFiles,
    ensure_ca,
    ensure_certificates,
    install_ca,
    server_context,
    server_names,
    small_tls_buffers,
)
from devprov.server.trust import ClientTrust
from devprov.settings import Settings
from devprov.store.audit import StoredAudit
from devprov.store.database import Store
from devprov.store.deployment import DeploymentIdentity, claim
from devprov.store.directory import CachedDirectory
from devprov.store.exchanges import StoredExchanges
from devprov.store.hub_messages import StoredMessageLog
from devprov.store.registrations import (
    StoredChallenges,
    StoredClaims,
    StoredOperations,
    StoredRegistrations,
)
from devprov.store.schema import compact, head_revision, migrate

log = logging.getLogger(__name__)
OPERATION_RETENTION_SECONDS = 24 * 3600


def prepare(settings: Settings) -> tuple[Instance, TlsFiles]:
    """Create or update the instance file and TLS material for these settings, migrate the
    store, and take the deployment's identity from it (see `join_deployment`)."""
    instance = ensure_instance(
        settings.data_dir,
        host=settings.host,
        https_port=settings.https_port,
        mqtt_port=settings.mqtt_port,
        amqp_port=settings.amqp_port,
        database=settings.db,
        names=settings.names or None,
    )
    migrate(instance.database)
    instance = join_deployment(settings.data_dir, instance)
    pair = settings.tls_pair()
    if pair is not None:
        tls = TlsFiles(pair[0], pair[0], pair[1])
    else:
        tls = ensure_certificates(
            settings.data_dir / "tls",
            server_names(instance.host, instance.names),
            load_sealer(settings.data_dir),
        )
    return instance, tls


def join_deployment(data_dir: Path, instance: Instance) -> Instance:
    """One deployment, one identity: the id scope, service policies and TLS CA kept in the
    store win over the data dir's (the first node to start on a store puts its own there), so
    every node on a store is the same DPS to devices and service clients."""
    sealer = load_sealer(data_dir)
    ca_cert, ca_key = ensure_ca(data_dir / "tls", sealer)
    offered = DeploymentIdentity(instance.id_scope, tuple(instance.policies), ca_cert, ca_key)
    shared = claim(instance.database, offered, sealer)
    install_ca(data_dir / "tls", shared.ca_cert, shared.ca_key, sealer)
    if shared.id_scope == instance.id_scope and list(shared.policies) == instance.policies:
        return instance
    log.info("took the deployment's identity from the store: id scope %s", shared.id_scope)
    joined = instance.model_copy(
        update={"id_scope": shared.id_scope, "policies": list(shared.policies)}
    )
    save_instance(data_dir, joined)
    return joined


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
    admission: Settings | None = None,
) -> RegistrationService:
    """The registration service and its stages over a store (`admission`: the settings whose
    caps and token lifetime apply; none when not given)."""
    directory = CachedDirectory(store)
    custom = CustomAllocator(webhooks, functions, exchanges)
    allocators = Allocators({**built_in_allocators(), "custom": custom})
    records = StoredRegistrations(store)
    operations = StoredOperations(store)
    observing = Observers(observers)
    limits = (
        {
            "max_in_flight": admission.max_registrations_in_flight,
            "max_in_flight_per_device": admission.max_registrations_in_flight_per_device,
            "throttle_retry_after": admission.throttle_retry_after,
        }
        if admission
        else {}
    )
    lifetime = admission.sas_max_lifetime if admission else DEFAULT_MAX_LIFETIME_SECONDS
    claiming = Claiming(StoredClaims(store), deadline_seconds)
    settling = Settling(CachedDirectory(store), connectors, records, operations, claiming)
    return RegistrationService(
        RegistrationSettings(
            id_scope,
            fast_path_seconds=fast_path_seconds,
            deadline_seconds=deadline_seconds,
            **limits,
        ),
        Attestation(id_scope, directory, StoredChallenges(store), lifetime),
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
    gates: dict[str, Gate]
    """Each listener's gate (https, mqtt, amqp): its caps and the connections it holds."""
    draining: asyncio.Event = field(default_factory=asyncio.Event)
    listeners: list[Callable[[], Awaitable[None]]] = field(default_factory=list)

    async def drain(self, seconds: float) -> bool:
        """Stop taking work, then finish what is held: /readyz answers 503 and the listeners
        close at once (connections already open stay), then the registrations running end, or
        `seconds` pass (False then)."""
        self.draining.set()
        for stop_listening in self.listeners:
            await stop_listening()
        finished = await self.registrations.drain(seconds)
        if not finished:
            log.warning("drained for %ss: registrations still running are left", seconds)
        return finished

    async def close(self) -> None:
        await self.stack.aclose()


async def start(settings: Settings, observers: Iterable[Observer] = ()) -> Devprov:
    """Migrate the store, then build every part and listen."""
    instance, tls = await asyncio.to_thread(prepare, settings)
    async with AsyncExitStack() as stack:
        sealer = load_sealer(settings.data_dir)
        store = Store.connect(instance.database, sealer)
        stack.push_async_callback(store.close)
        sealed = await store.seal_secrets()  # once: what an older devprov left in plaintext
        if sealed:
            await asyncio.to_thread(compact, instance.database)  # no plaintext in free pages
            log.info("sealed the secrets of %d records under key %s", sealed, sealer.current_id)
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
        issuers = IssuingCas(store, settings.data_dir, sealer)
        await asyncio.to_thread(issuers.reseal_keys)  # keys an older devprov left plain
        registrations = registration_service(
            store,
            instance.id_scope,
            connectors,
            webhooks,
            functions=functions,
            exchanges=ObservedExchanges(
                StoredExchanges(store, settings.exchange_log_size), exchanged
            ),
            issuers=issuers,
            fast_path_seconds=settings.fast_path_seconds,
            deadline_seconds=settings.registration_deadline,
            observers=watching,
            admission=settings,
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
        context = server_context(tls.cert, tls.key, sealer, own_tls)
        certificate = ServerCertificate(own_tls, sealer)

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
        draining = asyncio.Event()
        add_health_routes(router, store.schema_revision, head_revision(), draining.is_set)
        add_metrics_route(router, metrics, MetricsAccess(settings.metrics, settings.metrics_token))
        add_openapi_route(router)
        admin = Admin(store, factory.prepare)
        audit = StoredAudit(store, settings.audit_retention_days)

        async def prune_audit() -> None:
            await audit.prune()

        await prune_audit()
        stack.push_async_callback(_cancelled, asyncio.create_task(_every(3600.0, prune_audit)))
        ServiceApi(
            admin, instance.policy, known_hosts, hubs, after_write, audit, settings.sas_max_lifetime
        ).add_routes(router)
        HubApi(hubs, audit).add_routes(router)
        if settings.console:
            Console(
                admin,
                lambda: instance.policies,
                activity,
                id_scope=instance.id_scope,
                connector_kinds=factory.kinds,
                after_write=after_write,
                audit=audit,
            ).add_routes(router)
        dps_amqp = DpsAmqp(registrations, settings.max_message_bytes)
        mqtt_limits = SessionLimits(settings.mqtt_connect_timeout, settings.mqtt_max_keep_alive)
        amqp_limits = AmqpLimits(settings.amqp_open_timeout, settings.amqp_idle_timeout)
        DeviceApi(
            registrations,
            settings.max_message_bytes,
            applications,
            dps.max_packet_bytes,
            open_sessions,
            dps_amqp,
            mqtt_limits,
            amqp_limits,
        ).add_routes(router)
        gates = {
            name: Gate(name, settings.max_connections, settings.max_connections_per_address)
            for name in ("https", "mqtt", "amqp")
        }
        loop = asyncio.get_running_loop()
        if loop.get_exception_handler() is None:
            loop.set_exception_handler(ResourceErrors())
        shared = settings.workers > 1  # several processes accept on the same ports
        runner = web.AppRunner(
            build_app(router, gates["https"], settings.http_body_timeout),
            access_log=None,
            keepalive_timeout=settings.http_keepalive_timeout,
        )
        await runner.setup()
        stack.push_async_callback(runner.cleanup)
        stack.callback(activity.feed.close)  # open live feeds end first, or cleanup waits
        metrics.watch(Gauges(_connections(runner, open_sessions), lambda: registrations.in_flight))
        handler_factory = runner.server
        assert handler_factory is not None
        listeners = [
            (
                instance.https_port,
                lambda: HttpGuarded(
                    gates["https"], handler_factory(), settings.http_header_timeout
                ),
            ),
            (
                instance.mqtt_port,
                lambda: GuardedProtocol(
                    gates["mqtt"],
                    MqttTlsProtocol(applications, dps.max_packet_bytes, open_sessions, mqtt_limits),
                ),
            ),
            (
                instance.amqp_port,
                lambda: GuardedProtocol(gates["amqp"], AmqpTlsProtocol(dps_amqp, amqp_limits)),
            ),
        ]
        servers: list[asyncio.Server] = []
        for port, factory_of in listeners:
            for server in await serve(
                factory_of,
                instance.host,
                port,
                context,
                handshake_timeout=settings.tls_handshake_timeout,
                reuse_port=shared,
            ):
                stack.callback(server.close)
                servers.append(server)
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

        async def close_listeners() -> None:
            for server in servers:
                server.close()

        return Devprov(
            instance,
            tls,
            store,
            registrations,
            hubs,
            metrics,
            stack.pop_all(),
            settings.data_dir,
            gates,
            draining,
            [close_listeners],
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
        await devprov.drain(settings.drain_seconds)
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
    prepare(settings)  # migrates, and joins the deployment, once before the workers start
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
