"""The one place that builds devprov from its parts and runs it."""

from __future__ import annotations

import asyncio
import logging
import multiprocessing
import os
import resource
import signal
import time
from dataclasses import dataclass, field
from pathlib import Path

from aiohttp import web

from devprov.admin import Admin
from devprov.allocation.custom import DEFAULT_TIMEOUT_SECONDS, WebhookClient
from devprov.config import Instance, ensure_instance
from devprov.hubs.registry import RegistryConnector
from devprov.memory import trim_forever
from devprov.protocol.dps import DEFAULT_MAX_MESSAGE_BYTES
from devprov.registration import RegistrationService, RegistrationSettings
from devprov.server.app import build_app
from devprov.server.device_api import DeviceApi
from devprov.server.mqtt import MqttTlsProtocol
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
from devprov.store.database import Kind, Store, migrate

log = logging.getLogger(__name__)
OPERATION_RETENTION_SECONDS = 24 * 3600


@dataclass
class ServeOptions:
    """What `devprov serve` is told; None leaves the instance's recorded value in place."""

    data_dir: Path
    host: str | None = None
    https_port: int | None = None
    mqtt_port: int | None = None
    database: str | None = None
    names: list[str] = field(default_factory=list)
    tls_cert: Path | None = None
    tls_key: Path | None = None
    webhook_timeout: float = DEFAULT_TIMEOUT_SECONDS
    fast_path_seconds: float = 1.5
    max_message_bytes: int = DEFAULT_MAX_MESSAGE_BYTES
    workers: int = 1
    log_level: str = "INFO"


def prepare(options: ServeOptions) -> tuple[Instance, TlsFiles]:
    """Create or update the instance file and TLS material for these options."""
    instance = ensure_instance(
        options.data_dir,
        host=options.host,
        https_port=options.https_port,
        mqtt_port=options.mqtt_port,
        database=options.database,
        names=options.names or None,
    )
    if options.tls_cert and options.tls_key:
        tls = TlsFiles(options.tls_cert, options.tls_cert, options.tls_key)
    else:
        tls = ensure_certificates(
            options.data_dir / "tls", server_names(instance.host, instance.names)
        )
    return instance, tls


@dataclass
class Devprov:
    """A running devprov: its store, services and listening sites."""

    instance: Instance
    tls: TlsFiles
    store: Store
    registrations: RegistrationService
    runner: web.AppRunner
    mqtt_server: asyncio.Server
    trust: ClientTrust

    async def close(self) -> None:
        await self.trust.stop()
        self.mqtt_server.close()
        await self.runner.cleanup()
        await self.registrations.close()
        await self.store.close()


async def start(options: ServeOptions) -> Devprov:
    instance, tls = prepare(options)
    store = Store.open(instance.database)
    registrations = RegistrationService(
        RegistrationSettings(instance.id_scope, fast_path_seconds=options.fast_path_seconds),
        store,
        WebhookClient(options.webhook_timeout),
        {"registry": RegistryConnector(store)},
    )
    router = Router()
    known_hosts = {name.lower() for name in server_names(instance.host, instance.names)}
    known_hosts.add(instance.host_name.lower())
    small_tls_buffers()
    context = server_context(tls.cert, tls.key)
    trust = ClientTrust(context, store)
    await trust.refresh()
    trust.start()
    ServiceApi(Admin(store), instance, known_hosts, trust.refresh).add_routes(router)
    DeviceApi(registrations, options.max_message_bytes).add_routes(router)
    runner = web.AppRunner(build_app(router), access_log=None)
    await runner.setup()
    shared = options.workers > 1  # several processes accept on the same ports
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
        lambda: MqttTlsProtocol(registrations, options.max_message_bytes),
        host=instance.host,
        port=instance.mqtt_port,
        ssl=context,
        reuse_address=True,
        reuse_port=shared,
    )
    log.info(
        "devprov serving id scope %s on https://%s:%d and mqtts://%s:%d",
        instance.id_scope,
        instance.host_name,
        instance.https_port,
        instance.host_name,
        instance.mqtt_port,
    )
    return Devprov(instance, tls, store, registrations, runner, mqtt_server, trust)


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


async def serve_forever(options: ServeOptions) -> None:
    raise_file_limit()
    devprov = await start(options)
    trimmer = asyncio.create_task(trim_forever())
    pruner = asyncio.create_task(prune_operations_forever(devprov.store))
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    try:
        await stop.wait()
    finally:
        trimmer.cancel()
        pruner.cancel()
        await devprov.close()


def raise_file_limit() -> int:
    """Allow as many open files as the hard limit does: every connection is one."""
    _soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    return hard


def configure_logging(level: str) -> None:
    logging.basicConfig(
        level=level.upper(), format="%(asctime)s %(process)d %(levelname)s %(name)s: %(message)s"
    )


def run(options: ServeOptions) -> None:
    """Serve until SIGINT/SIGTERM, in this process or in `options.workers` processes.

    Workers share the ports (SO_REUSEPORT: the kernel spreads connections over them) and the
    store; everything a later request may need (operations, challenges, caches' revisions)
    lives in the store, so any worker can answer any poll. The schema is migrated once, here,
    before they start."""
    if options.workers <= 1:
        asyncio.run(serve_forever(options))
        return
    instance, _ = prepare(options)
    migrate(instance.database)
    context = multiprocessing.get_context("spawn")
    workers = [
        context.Process(target=_worker, args=(options,), name=f"devprov-worker-{number}")
        for number in range(options.workers)
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


def _worker(options: ServeOptions) -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the parent turns Ctrl-C into SIGTERM
    configure_logging(options.log_level)
    asyncio.run(serve_forever(options))
