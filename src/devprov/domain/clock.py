"""Timestamps and etags in the formats DPS uses on the wire."""

from __future__ import annotations

import base64
import json
import uuid
from datetime import UTC, datetime


def utc_now() -> datetime:
    return datetime.now(UTC)


def format_timestamp(moment: datetime) -> str:
    """DPS writes seven fractional digits and a Z: 2023-05-19T23:10:47.3759621Z."""
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%f") + "0Z"


def now_timestamp() -> str:
    return format_timestamp(utc_now())


def new_etag() -> str:
    """An opaque etag shaped like DPS's: base64 of a quoted identifier."""
    return base64.b64encode(json.dumps(str(uuid.uuid4())).encode()).decode()
