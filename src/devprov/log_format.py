"""Log output: readable text, or one JSON object a line (`--log-format json`).

A line may carry structured fields (`extra={"fields": {...}}`, or `emit`): JSON puts them in
the object, text appends them as `key=value`. Lines never carry keys, tokens or connection
strings; what writes a line chooses its fields with that in mind.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Mapping
from typing import Any

TEXT_FORMAT = "%(asctime)s %(process)d %(levelname)s %(name)s: %(message)s"


def emit(logger: logging.Logger, level: int, message: str, fields: Mapping[str, Any]) -> None:
    """Log one line with fields, without the caller lookup `logger.info` pays for (this runs
    once per registration). Callers check `logger.isEnabledFor(level)` before building the
    fields, so a level that is off costs nothing."""
    record = logger.makeRecord(
        logger.name, level, "", 0, message, (), None, extra={"fields": fields}
    )
    logger.handle(record)


def _pair(key: str, value: Any) -> str:
    kind = type(value)
    if kind is str:
        if not value or " " in value or '"' in value or "=" in value:
            return f"{key}={json.dumps(value, ensure_ascii=False)}"
        return f"{key}={value}"
    if kind is int or kind is float:
        return f"{key}={value}"
    return f"{key}={json.dumps(value, default=str, separators=(',', ':'))}"


class TextFormatter(logging.Formatter):
    """The classic line, then the fields as `key=value`."""

    def __init__(self) -> None:
        super().__init__(TEXT_FORMAT)

    def format(self, record: logging.LogRecord) -> str:
        line = super().format(record)
        fields: Mapping[str, Any] | None = getattr(record, "fields", None)
        if not fields:
            return line
        pairs = " ".join([_pair(key, value) for key, value in fields.items() if value is not None])
        head, newline, rest = line.partition("\n")  # keep a traceback below the line
        return f"{head} {pairs}{newline}{rest}"


class JsonFormatter(logging.Formatter):
    """One JSON object a line: time (UTC, ISO 8601), level, logger, process, message, fields."""

    def format(self, record: logging.LogRecord) -> str:
        seconds = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
        line: dict[str, Any] = {
            "time": f"{seconds}.{int(record.msecs):03d}Z",
            "level": record.levelname,
            "logger": record.name,
            "process": record.process,
            "message": record.getMessage(),
        }
        fields: Mapping[str, Any] | None = getattr(record, "fields", None)
        if fields:
            line.update((key, value) for key, value in fields.items() if value is not None)
        if record.exc_info:
            line["exception"] = self.formatException(record.exc_info)
        return json.dumps(line, separators=(",", ":"), default=str, ensure_ascii=False)


def formatter(log_format: str) -> logging.Formatter:
    return JsonFormatter() if log_format == "json" else TextFormatter()


def configure_logging(level: str, log_format: str = "text") -> None:
    """Log to stderr at `level`, as text or JSON lines. Lines name no thread (devprov is one
    event loop a process): not looking it up makes every record cheaper."""
    logging.logThreads = False
    logging.logMultiprocessing = False
    handler = logging.StreamHandler()
    handler.setFormatter(formatter(log_format))
    logging.basicConfig(level=level.upper(), handlers=[handler], force=True)
