"""The observation seam: what happens to each registration, told to whoever listens.

The registration service reports each step (refused, attested, allocated, placed, assigned,
failed) with how long it took; metrics, logs and a live feed attach here as observers without
touching the service. An observer is called inline and must be quick; one that raises is
logged and the registration goes on.

Transports say which request a step runs for by setting `CURRENT_REQUEST` (a context
variable, so it follows the request into the registration's task); every event captures it.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Iterator, Mapping
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass, field
from typing import Any, Literal

from devprov.domain.errors import DpsError

log = logging.getLogger(__name__)
EventKind = Literal["refused", "attested", "allocated", "placed", "assigned", "failed"]
Transport = Literal["https", "mqtt", "mqtt-ws"]


@dataclass(frozen=True)
class Request:
    """The device request a step runs for: how it arrived, the trackingId its answer carries,
    and when it arrived (`time.perf_counter()`), which end-to-end latency is measured from."""

    transport: Transport
    tracking_id: str
    received: float


CURRENT_REQUEST: ContextVar[Request | None] = ContextVar("devprov_request", default=None)


@contextmanager
def handling(request: Request) -> Iterator[Request]:
    """Run a block as the handling of `request` (events inside it carry it)."""
    token = CURRENT_REQUEST.set(request)
    try:
        yield request
    finally:
        CURRENT_REQUEST.reset(token)


@dataclass(frozen=True)
class RegistrationEvent:
    """One step of one registration.

    `seconds` is how long the step took (for `assigned` and `failed`: the whole provisioning
    after attestation); `enrollment` is the group id, or None for an individual enrollment.
    The outcome events (`assigned`, `failed`) also carry what the device sent (`payload`), the
    record written (`record`), the initial twin applied on the hub (`initial_twin`) and each
    stage's seconds (`stages`: allocation, placement, store)."""

    kind: EventKind
    registration_id: str
    seconds: float
    enrollment: str | None = None
    attestation: str | None = None
    hub: str | None = None
    error: DpsError | None = None
    payload: Any = None
    record: Mapping[str, Any] | None = None
    initial_twin: Mapping[str, Any] | None = None
    stages: Mapping[str, float] | None = None
    request: Request | None = field(default_factory=CURRENT_REQUEST.get)


Observer = Callable[[RegistrationEvent], None]


class Observers:
    """Fans an event out to every observer; an observer's failure is never the device's."""

    def __init__(self, observers: Iterable[Observer] = ()) -> None:
        self._observers = list(observers)

    def add(self, observer: Observer) -> None:
        self._observers.append(observer)

    def __bool__(self) -> bool:
        return bool(self._observers)

    def __call__(self, event: RegistrationEvent) -> None:
        for observer in self._observers:
            try:
                observer(event)
            except Exception:
                log.exception("registration observer %r failed", observer)
