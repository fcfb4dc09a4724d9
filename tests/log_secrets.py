"""A pytest plugin: no devprov log line of the whole run may carry a secret the run used.

Every log record of the `devprov` loggers (DEBUG and up, so debug lines are checked too) is
formatted as devprov would write it, and kept. Each devprov the suite starts through
`tests.conftest.start_devprov` tells `remember` its policies' keys and connection string, and,
as it stops, every secret in its store: enrollments' and groups' symmetric keys, the device
keys derived for the devices registered in each group, linked hubs' connection strings (and
their keys), and the keys of the devices on its built-in hubs. At the end of the run the kept
lines are searched for those values and for token and connection-string shapes; any hit fails
the run.
"""

from __future__ import annotations

import logging
import re
from typing import Any

import pytest

from devprov.domain.keys import derive_device_key
from devprov.domain.records import Kind
from devprov.log_format import JsonFormatter
from devprov.store.database import Store

SHAPES = re.compile(r"SharedAccessSignature sr=|[?&]sig=|SharedAccessKey=|&skn=", re.IGNORECASE)
_secrets: set[str] = set()
_lines: list[str] = []
_started = 0


class _Keeper(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.setFormatter(JsonFormatter())

    def emit(self, record: logging.LogRecord) -> None:
        try:
            _lines.append(self.format(record))
        except Exception:  # a record that cannot be formatted is devprov's bug, not a leak
            self.handleError(record)


def remember(*secrets: str | None) -> None:
    _secrets.update(secret for secret in secrets if secret and len(secret) >= 8)


def started() -> None:
    global _started
    _started += 1


async def remember_store(store: Store) -> None:
    """Every symmetric key a store holds, and the device keys derived from group keys."""
    groups: dict[str, str] = {}
    for kind in (Kind.ENROLLMENT, Kind.GROUP):
        for row in await store.page(kind):
            keys: dict[str, Any] = row.document.get("attestation", {}).get("symmetricKey") or {}
            _secrets.update(value for value in keys.values() if isinstance(value, str) and value)
            if kind is Kind.GROUP and keys.get("primaryKey"):
                groups[row.key] = keys["primaryKey"]
    for group_key, key in groups.items():
        rows = await store.page(Kind.REGISTRATION, where={"group_key": group_key})
        _secrets.update(derive_device_key(key, row.document["registrationId"]) for row in rows)
    for row in await store.page(Kind.LINKED_HUB):
        text = row.document.get("connectionString")
        if isinstance(text, str) and text:
            _secrets.add(text)
            parts = text.split(";")
            _secrets.update(
                p[len("SharedAccessKey=") :] for p in parts if p.startswith("SharedAccessKey=")
            )
    for row in await store.page(Kind.HUB_DEVICE):
        keys = (row.document.get("authentication") or {}).get("symmetricKey") or {}
        _secrets.update(value for value in keys.values() if isinstance(value, str) and value)


def pytest_sessionstart(session: pytest.Session) -> None:
    logger = logging.getLogger("devprov")
    logger.addHandler(_Keeper())
    logger.setLevel(logging.DEBUG)


def leaks() -> list[str]:
    found = []
    for line in _lines:
        if SHAPES.search(line) or any(secret in line for secret in _secrets):
            found.append(line)
    return found


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    if not _started:
        return
    reporter = session.config.pluginmanager.get_plugin("terminalreporter")
    leaked = leaks()
    summary = (
        f"log secrets: {len(_lines)} log lines of {_started} devprov runs searched for"
        f" {len(_secrets)} secrets: {len(leaked)} leaks"
    )
    if reporter is not None:
        reporter.write_line(summary)
        for line in leaked[:20]:
            reporter.write_line(f"  LEAK: {line[:400]}")
    if leaked:
        session.exitstatus = pytest.ExitCode.TESTS_FAILED
