"""The observation seam: what happens to each registration, told to whoever listens.

The registration service reports each step (refused, attested, allocated, placed, assigned,
failed) with how long it took; metrics, logs and a live feed attach here as observers without
touching the service. An observer is called inline and must be quick; one that raises is
logged and the registration goes on.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Literal

from devprov.domain.errors import DpsError

log = logging.getLogger(__name__)
EventKind = Literal["refused", "attested", "allocated", "placed", "assigned", "failed"]


@dataclass(frozen=True)
class RegistrationEvent:
    """One step of one registration.

    `seconds` is how long the step took (for `assigned` and `failed`: the whole provisioning
    after attestation); `enrollment` is the group id, or None for an individual enrollment."""

    kind: EventKind
    registration_id: str
    seconds: float
    enrollment: str | None = None
    attestation: str | None = None
    hub: str | None = None
    error: DpsError | None = None


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
