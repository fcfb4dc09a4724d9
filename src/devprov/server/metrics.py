"""Prometheus metrics: registrations, stage latencies, webhook and connector errors, load.

Counters and histograms are fed by observers (of registrations, webhook exchanges and store
write batches); gauges that describe the present (open connections, registrations in flight)
are read when /metrics is scraped, so they cost nothing in between. /metrics has its own access
rule (`metrics` setting): loopback peers only (the default), anyone, a bearer token, or off.
"""

from __future__ import annotations

import hmac
import ipaddress
import math
import time
from bisect import bisect_left
from collections.abc import Callable, Iterator
from dataclasses import dataclass

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.registry import Collector

from devprov.domain.errors import HUB_CONNECTOR_FAILED, PERMISSION_DENIED, DpsError, unauthorized
from devprov.domain.exchanges import Exchange
from devprov.registration.observe import RegistrationEvent
from devprov.server.routing import Router

STAGE_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10)
BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256)
_STAGE_NAMES = {"allocation": "allocation", "placement": "hub_connector", "store": "store"}


@dataclass
class Gauges:
    """Where the present is read from at scrape time: each a callable answering counts."""

    connections: Callable[[], dict[str, int]]
    in_flight: Callable[[], int]


class _PresentCollector(Collector):
    def __init__(self, gauges: Gauges) -> None:
        self.gauges = gauges

    def collect(self) -> Iterator[Metric]:
        connections = GaugeMetricFamily(
            "devprov_connections", "Open connections, by transport.", labels=["transport"]
        )
        for transport, count in sorted(self.gauges.connections().items()):
            connections.add_metric([transport], count)
        yield connections
        yield GaugeMetricFamily(
            "devprov_registrations_in_flight",
            "Registrations attested and still being provisioned.",
            value=self.gauges.in_flight(),
        )


class _Histogram:
    """Counts per bucket and a sum, without locks: devprov observes and scrapes on one event
    loop, and prometheus_client's thread-safe histograms cost ten times as much an update."""

    __slots__ = ("bounds", "counts", "total")

    def __init__(self, bounds: tuple[float, ...]) -> None:
        self.bounds = bounds
        self.counts = [0] * (len(bounds) + 1)
        self.total = 0.0

    def observe(self, value: float) -> None:
        self.counts[bisect_left(self.bounds, value)] += 1  # le is inclusive: first bound >= v
        self.total += value

    def buckets(self) -> list[tuple[str, float]]:
        cumulative, rows = 0, list[tuple[str, float]]()
        for bound, count in zip((*self.bounds, math.inf), self.counts, strict=True):
            cumulative += count
            rows.append(("+Inf" if math.isinf(bound) else repr(float(bound)), cumulative))
        return rows


@dataclass(frozen=True)
class _Family:
    name: str
    help: str
    labels: tuple[str, ...]


REGISTRATIONS = _Family(
    "devprov_registrations",
    "Registration outcomes (assigned, failed, refused), by transport, attestation and errorCode.",
    ("transport", "attestation", "outcome", "error_code"),
)
STAGE_SECONDS = _Family(
    "devprov_stage_seconds",
    "Seconds per stage: attestation, allocation, webhook, hub_connector, store.",
    ("stage",),
)
REGISTRATION_SECONDS = _Family(
    "devprov_registration_seconds",
    "Seconds from a device's request to its registration's outcome, by transport.",
    ("transport",),
)
WEBHOOK_CALLS = _Family(
    "devprov_webhook_calls",
    "Custom allocation webhook calls, by errorCode (0: answered well).",
    ("error_code",),
)
CONNECTOR_ERRORS = _Family(
    "devprov_hub_connector_errors",
    "Hub connector failures, by linked hub and errorCode.",
    ("hub", "error_code"),
)
BATCH_SIZE = _Family(
    "devprov_store_batch_size", "Write operations committed together in one store transaction.", ()
)


class _Collector(Collector):
    def __init__(self, metrics: Metrics) -> None:
        self.metrics = metrics

    def collect(self) -> Iterator[Metric]:
        m = self.metrics
        for family, counts in (
            (REGISTRATIONS, m.registrations),
            (WEBHOOK_CALLS, m.webhook_calls),
            (CONNECTOR_ERRORS, m.connector_errors),
        ):
            counter = CounterMetricFamily(family.name, family.help, labels=family.labels)
            for key, value in sorted(counts.items()):
                counter.add_metric(list(key), value)
            yield counter
        for family, histograms in (
            (STAGE_SECONDS, m.stages),
            (REGISTRATION_SECONDS, m.ends),
            (BATCH_SIZE, {(): m.batch_size}),
        ):
            metric = HistogramMetricFamily(family.name, family.help, labels=family.labels)
            for key, histogram in sorted(histograms.items()):
                metric.add_metric(list(key), histogram.buckets(), histogram.total)
            yield metric


class Metrics:
    """devprov's metrics in a registry of their own (several devprovs may share a process).

    Updates are plain dictionary and list operations; the Prometheus families are built from
    them when /metrics is scraped."""

    def __init__(self) -> None:
        self.registrations: dict[tuple[str, ...], int] = {}
        self.webhook_calls: dict[tuple[str, ...], int] = {}
        self.connector_errors: dict[tuple[str, ...], int] = {}
        self.stages = {
            (name,): _Histogram(STAGE_BUCKETS)
            for name in ("attestation", "allocation", "webhook", "hub_connector", "store")
        }
        self.ends: dict[tuple[str, ...], _Histogram] = {}
        self.batch_size = _Histogram(BATCH_BUCKETS)
        self._stage = {name: histogram for (name,), histogram in self.stages.items()}
        self.registry = CollectorRegistry(auto_describe=True)
        self.registry.register(_Collector(self))

    def watch(self, gauges: Gauges) -> None:
        """Read these gauges at every scrape."""
        self.registry.register(_PresentCollector(gauges))

    def observe(self, event: RegistrationEvent) -> None:
        """A registration observer."""
        kind = event.kind
        if kind == "attested":
            self._stage["attestation"].observe(event.seconds)
            return
        if kind not in ("assigned", "failed", "refused"):
            return
        request = event.request
        transport = request.transport if request else "none"
        error = event.error
        key = (transport, event.attestation or "", kind, str(error.error_code) if error else "")
        self.registrations[key] = self.registrations.get(key, 0) + 1
        if kind == "refused":
            return
        for stage, seconds in (event.stages or {}).items():
            histogram = self._stage.get(_STAGE_NAMES.get(stage, ""))
            if histogram is not None:
                histogram.observe(seconds)
        if request is not None:
            end = self.ends.get((transport,))
            if end is None:
                end = self.ends[(transport,)] = _Histogram(STAGE_BUCKETS)
            end.observe(time.perf_counter() - request.received)
        if error is not None and error.error_code == HUB_CONNECTOR_FAILED:
            errors = (event.hub or "", str(error.error_code))
            self.connector_errors[errors] = self.connector_errors.get(errors, 0) + 1

    def webhook(self, exchange: Exchange) -> None:
        """An exchange observer (webhooks and in-process allocators alike)."""
        self._stage["webhook"].observe(exchange.duration_ms / 1000)
        code = (str(exchange.error["errorCode"] if exchange.error else 0),)
        self.webhook_calls[code] = self.webhook_calls.get(code, 0) + 1

    def batch(self, size: int, seconds: float) -> None:
        """A store write-batch observer."""
        self.batch_size.observe(size)

    def exposition(self) -> bytes:
        return generate_latest(self.registry)


@dataclass(frozen=True)
class MetricsAccess:
    """Who may read /metrics: `loopback` peers, anyone (`open`), a bearer `token`, or `off`."""

    rule: str = "loopback"
    token: str | None = None

    def check(self, request: web.Request) -> None:
        if self.rule == "open":
            return
        if self.rule == "token":
            given = request.headers.get("Authorization", "")
            scheme, _, credential = given.partition(" ")
            if scheme.lower() != "bearer" or not hmac.compare_digest(
                credential.strip().encode(), (self.token or "").encode()
            ):
                raise unauthorized("/metrics needs `Authorization: Bearer <metrics token>`.")
            return
        if self.rule == "loopback" and _is_loopback(request.remote):
            return
        raise DpsError(
            403,
            PERMISSION_DENIED,
            "/metrics answers loopback peers only; see the `metrics` setting.",
        )


def _is_loopback(address: str | None) -> bool:
    try:
        return address is not None and ipaddress.ip_address(address).is_loopback
    except ValueError:
        return False


def add_metrics_route(router: Router, metrics: Metrics, access: MetricsAccess) -> None:
    """GET /metrics, unless the rule is `off` (then it is not there at all: 404000)."""
    if access.rule == "off":
        return

    async def exposition(request: web.Request, params: dict[str, str]) -> web.StreamResponse:
        access.check(request)
        response = web.Response(body=metrics.exposition())
        response.headers["Content-Type"] = CONTENT_TYPE_LATEST
        return response

    router.add("GET", "/metrics", exposition)
