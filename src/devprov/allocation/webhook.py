"""The custom allocation webhook: DPS's request body out, the hub, twin and payload back."""

from __future__ import annotations

import asyncio
import json
import random
from dataclasses import dataclass, field
from typing import Any

import aiohttp

from devprov.allocation.allocator import AllocationRequest
from devprov.allocation.policies import AllocationError
from devprov.bounded_read import read_limited
from devprov.domain.enrollments import public_view
from devprov.domain.errors import (
    CUSTOM_ALLOCATION_FAILED,
    HUB_NOT_LINKED,
    NO_HUB,
    WEBHOOK_BAD_RESPONSE,
    WEBHOOK_TIMEOUT,
    WEBHOOK_UNREACHABLE,
)
from devprov.domain.json_text import JsonRefused, parse_json
from devprov.domain.models import IndividualEnrollment
from devprov.protocol.signature import HEADER, signature_header

DEFAULT_TIMEOUT_SECONDS = 10.0
MAX_RESPONSE_BYTES = 1024 * 1024


@dataclass(frozen=True)
class WebhookAnswer:
    """What the webhook decided: the hub, an optional initial twin and an optional payload."""

    iot_hub_host_name: str
    initial_twin: dict[str, Any] | None
    payload: Any


def allocation_request(
    enrollment_kind: str,
    enrollment_view: dict[str, Any],
    runtime_context: dict[str, Any],
    linked_hubs: list[str],
) -> dict[str, Any]:
    """The body DPS posts: exactly one of individualEnrollment / enrollmentGroup (no secrets),
    the device runtime context (registration id, attestation kind, payload) and the linked hubs."""
    return {
        enrollment_kind: enrollment_view,
        "deviceRuntimeContext": runtime_context,
        "linkedHubs": linked_hubs,
    }


@dataclass(frozen=True)
class Attempt:
    """One HTTP attempt of an exchange: the status it got, or why it got none."""

    status: int | None
    error: str | None
    seconds: float


@dataclass
class Exchanged:
    """What one call to a webhook produced, success or not, for the caller and the log."""

    status: int | None = None
    raw: bytes | None = None
    answer: WebhookAnswer | None = None
    error: AllocationError | None = None
    attempts: list[Attempt] = field(default_factory=list)


RETRIED_STATUSES = frozenset({502, 503, 504})
BACKOFF_BASE_SECONDS = 0.1
BACKOFF_CAP_SECONDS = 2.0


class WebhookClient:
    """Posts allocation requests over one pooled aiohttp session.

    The body is serialized once and those exact bytes are sent (and signed, with `secret`
    server-wide or a secret per call). With `retries`, a request that could not connect or was
    answered 502/503/504 is tried again after a jittered back-off, as long as the whole
    exchange stays within `timeout_seconds`; by default there are none, as in DPS."""

    def __init__(
        self,
        timeout_seconds: float = DEFAULT_TIMEOUT_SECONDS,
        *,
        secret: str | None = None,
        retries: int = 0,
    ) -> None:
        self.timeout_seconds = timeout_seconds
        self.secret = secret
        self.retries = retries
        self._session: aiohttp.ClientSession | None = None

    def _client(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            # No pool cap: a call waiting for a pooled connection would spend its time-out
            # waiting (300 devices at once behind a 100-connection pool failed a third of
            # them). Registrations in flight are capped upstream (max_registrations_in_flight).
            self._session = aiohttp.ClientSession(
                connector=aiohttp.TCPConnector(limit=0, keepalive_timeout=30),
                json_serialize=json.dumps,
            )
        return self._session

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()

    async def allocate(
        self, url: str, body: dict[str, Any], secret: str | None = None
    ) -> WebhookAnswer:
        exchanged = await self.exchange(url, body, secret)
        if exchanged.error is not None:
            raise exchanged.error
        assert exchanged.answer is not None
        return exchanged.answer

    async def exchange(
        self, url: str, body: dict[str, Any], secret: str | None = None
    ) -> Exchanged:
        """Post `body`; never raises for the webhook's failures, which are in `error`."""
        raw_body = json.dumps(body).encode()
        result = Exchanged()
        try:
            result.status, result.raw = await self._post(url, raw_body, secret, result.attempts)
        except AllocationError as error:
            result.error = error
            return result
        if not 200 <= result.status < 300:
            result.error = AllocationError(
                400,
                CUSTOM_ALLOCATION_FAILED,
                f"Custom allocation failed with status code: {result.status}",
            )
            return result
        try:
            result.answer = parse_answer(result.raw, body["linkedHubs"])
        except AllocationError as error:
            result.error = error
        return result

    async def _post(
        self, url: str, raw_body: bytes, secret: str | None, attempts: list[Attempt]
    ) -> tuple[int, bytes]:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.timeout_seconds
        signing = secret or self.secret
        for attempt in range(self.retries + 1):
            headers = {"Content-Type": "application/json"}
            if signing:
                headers[HEADER] = signature_header(signing, raw_body)
            started = loop.time()
            status: int | None = None
            try:
                timeout = aiohttp.ClientTimeout(total=max(0.001, deadline - started))
                async with self._client().post(
                    url, data=raw_body, headers=headers, timeout=timeout, allow_redirects=False
                ) as response:
                    status = response.status
                    raw = await read_limited(response.content, MAX_RESPONSE_BYTES)
            except TimeoutError:
                attempts.append(Attempt(status, "timeout", loop.time() - started))
                raise AllocationError(
                    400,
                    WEBHOOK_TIMEOUT,
                    f"Custom allocation webhook did not answer within {self.timeout_seconds:g} s.",
                ) from None
            except (aiohttp.ClientError, OSError, ValueError) as exc:
                reason = str(exc) or type(exc).__name__
                attempts.append(Attempt(status, reason, loop.time() - started))
                if status is not None:  # it answered, then broke off mid-body
                    raise AllocationError(
                        400,
                        WEBHOOK_BAD_RESPONSE,
                        f"Custom allocation webhook's answer broke off: {reason}.",
                    ) from None
                # Only a request that never reached the webhook is sure not to have acted.
                connect_failed = isinstance(exc, aiohttp.ClientConnectorError)
                if not connect_failed or not await _backoff(attempt, self.retries, deadline):
                    raise AllocationError(
                        400,
                        WEBHOOK_UNREACHABLE,
                        f"Custom allocation webhook could not be reached: {reason}.",
                    ) from None
                continue
            attempts.append(Attempt(status, None, loop.time() - started))
            if status in RETRIED_STATUSES and await _backoff(attempt, self.retries, deadline):
                continue
            return status, raw
        raise AssertionError("unreachable")  # pragma: no cover - the loop returns or raises


async def _backoff(attempt: int, retries: int, deadline: float) -> bool:
    """Wait before the next try ("full jitter"); False when none is left or time would run out."""
    if attempt >= retries:
        return False
    delay = random.uniform(0, min(BACKOFF_CAP_SECONDS, BACKOFF_BASE_SECONDS * 2**attempt))
    loop = asyncio.get_running_loop()
    if loop.time() + delay >= deadline:
        return False
    await asyncio.sleep(delay)
    return True


def parse_answer(raw: bytes | None, linked_hubs: list[str]) -> WebhookAnswer:
    """Check the webhook's AllocationResponse; each kind of mistake gets its own errorCode."""
    raw = raw or b""
    if len(raw) > MAX_RESPONSE_BYTES:
        raise AllocationError(
            400, WEBHOOK_BAD_RESPONSE, "Custom allocation webhook answered with more than 1 MB."
        )
    try:
        answer = parse_json(raw)
    except JsonRefused as refused:
        raise AllocationError(
            400,
            WEBHOOK_BAD_RESPONSE,
            f"Custom allocation webhook answered with a body that is not JSON ({refused}): "
            + raw[:80].decode("utf-8", "replace"),
        ) from None
    return check_answer(answer, linked_hubs)


def check_answer(answer: Any, linked_hubs: list[str]) -> WebhookAnswer:
    """Check an AllocationResponse already parsed (an in-process allocator's answer)."""
    if not isinstance(answer, dict):
        raise AllocationError(
            400, WEBHOOK_BAD_RESPONSE, "Custom allocation webhook answer is not a JSON object."
        )
    hub = answer.get("iotHubHostName")
    if not isinstance(hub, str) or not hub:
        raise AllocationError(
            400, NO_HUB, "Custom allocation webhook answer does not name an iotHubHostName."
        )
    chosen = next((name for name in linked_hubs if name.lower() == hub.lower()), None)
    if chosen is None:
        raise AllocationError(
            400,
            HUB_NOT_LINKED,
            f"Custom allocation webhook chose IoT hub {hub!r}, which is not one of the linked"
            f" hubs offered: {linked_hubs}.",
        )
    twin = answer.get("initialTwin")
    if twin is not None and not isinstance(twin, dict):
        raise AllocationError(
            400, WEBHOOK_BAD_RESPONSE, "Custom allocation webhook initialTwin is not a JSON object."
        )
    return WebhookAnswer(chosen, twin, answer.get("payload"))


def webhook_body(request: AllocationRequest) -> dict[str, Any]:
    """DPS's AllocationRequest: the enrollment without secrets, the device runtime context
    (registration id, where it is now, its attestation kind, its payload) and the hubs."""
    context: dict[str, Any] = {"registrationId": request.registration_id}
    if request.current is not None:
        context["currentIotHubHostName"] = request.current.hub
        context["currentDeviceId"] = request.current.device_id
    context.update(request.runtime_attestation)
    if request.payload is not None:
        context["payload"] = request.payload
    kind = (
        "individualEnrollment"
        if isinstance(request.enrollment, IndividualEnrollment)
        else "enrollmentGroup"
    )
    view = public_view(request.enrollment)
    view.pop("registrationState", None)
    return allocation_request(kind, view, context, [hub.host_name for hub in request.candidates])
