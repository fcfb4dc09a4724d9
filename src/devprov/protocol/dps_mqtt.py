"""DPS over MQTT: the CONNECT user name, the request topics, and the response topic.

The Python SDK splits response topics on `$` and reads the query after `$rid`, so `$rid` must be
the first parameter; the Node SDK matches `$dps/registrations/res/(.*)/?(.*)`; the C SDK only looks
for `retry-after=`. One shape serves them all: `$dps/registrations/res/{status}/?$rid={rid}` with
`&retry-after={seconds}` while the device must poll.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from urllib.parse import parse_qs, quote, unquote

RESPONSE_FILTER = "$dps/registrations/res/#"
# Bounds on what a device may send (the SDKs send a number or a UUID as the $rid): longer is
# refused, and the session closes the connection, before any work is done for it.
MAX_RID_LENGTH = 128
MAX_REQUEST_TOPIC_LENGTH = 1024
_CONTROL = re.compile("[\x00-\x1f\x7f-\x9f]")
_REGISTER_PREFIX = "$dps/registrations/PUT/iotdps-register/?"
_STATUS_PREFIX = "$dps/registrations/GET/iotdps-get-operationstatus/?"


class TopicError(ValueError):
    """A topic or user name DPS does not accept."""


@dataclass(frozen=True)
class Identity:
    """The CONNECT user name: `{idScope}/registrations/{registrationId}/api-version=...`."""

    id_scope: str
    registration_id: str
    api_version: str | None


@dataclass(frozen=True)
class RegisterTopic:
    rid: str


@dataclass(frozen=True)
class StatusTopic:
    rid: str
    operation_id: str


def parse_username(username: str | None) -> Identity:
    if not username:
        raise TopicError("the user name is required: {idScope}/registrations/{registrationId}/...")
    parts = username.split("/", 3)
    if len(parts) < 3 or parts[1] != "registrations" or not parts[0] or not parts[2]:
        raise TopicError(f"the user name {username!r} is not {{idScope}}/registrations/{{id}}/...")
    options = parse_qs(parts[3]) if len(parts) == 4 else {}
    version = options.get("api-version", [None])[0]
    return Identity(unquote(parts[0]), unquote(parts[2]), version)


def parse_request_topic(topic: str) -> RegisterTopic | StatusTopic:
    """Recognise the two request topics DPS accepts; anything else is refused, as is a topic
    past MAX_REQUEST_TOPIC_LENGTH characters or a `$rid` that could not be echoed."""
    if len(topic) > MAX_REQUEST_TOPIC_LENGTH:
        raise TopicError(
            f"a request topic of {len(topic)} characters; at most {MAX_REQUEST_TOPIC_LENGTH}"
            " are accepted"
        )
    for prefix in (_REGISTER_PREFIX, _STATUS_PREFIX):
        if topic.startswith(prefix):
            query = parse_qs(topic[len(prefix) :], keep_blank_values=True)
            rid = query.get("$rid", [""])[0]
            if not rid:
                raise TopicError(f"the topic {topic!r} has no $rid")
            if len(rid) > MAX_RID_LENGTH or _CONTROL.search(rid):
                raise TopicError(
                    f"the $rid {rid[:40]!r}... has {len(rid)} characters or a control character;"
                    f" at most {MAX_RID_LENGTH} printable ones are accepted"
                )
            if prefix is _REGISTER_PREFIX:
                return RegisterTopic(rid)
            operation_id = query.get("operationId", [""])[0]
            if not operation_id:
                raise TopicError(f"the topic {topic!r} has no operationId")
            return StatusTopic(rid, operation_id)
    raise TopicError(f"DPS does not accept publications to {topic!r}")


def response_topic(status: int, rid: str, retry_after: int | None = None) -> str:
    topic = f"$dps/registrations/res/{status}/?$rid={quote(rid, safe='')}"
    return topic + (f"&retry-after={retry_after}" if retry_after is not None else "")
