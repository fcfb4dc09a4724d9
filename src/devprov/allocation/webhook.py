"""The custom allocation webhook: DPS's request body out, the hub, twin and payload back."""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import aiohttp

from devprov.allocation.allocator import Allocation, AllocationRequest
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
from devprov.domain.models import IndividualEnrollment

log = logging.getLogger(__name__)
DEFAULT_TIMEOUT_SECONDS = 10.0
MAX_RESPONSE_BYTES = 1024 * 1024


@dataclass(frozen=True)
class WebhookAnswer:
    """What the webhook decided: the hub, an optional initial twin and an optional payload."""

    iot_hub_host_name: str
    initial_twin: dict[str, Any] | None
    payload: Any


@dataclass(frozen=True)
class WebhookExchange:
    """One call to a webhook, as it went: what was posted, what came back (None when nothing
    did), how long it took, and the refusal it ended in. The URL and bodies are as sent:
    whoever shows them removes the secrets (the URL's `code`, say)."""

    url: str
    request: dict[str, Any]
    status: int | None
    answer: bytes | None
    seconds: float
    error: AllocationError | None = None


ExchangeObserver = Callable[[WebhookExchange], None]


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


class WebhookClient:
    """Posts allocation requests over one pooled aiohttp session, with a timeout per call."""

    def __init__(
        self,
        timeout_seconds: float = DEFAULT_TIMEOUT_SECONDS,
        observer: ExchangeObserver | None = None,
    ) -> None:
        self.timeout_seconds = timeout_seconds
        self.observer = observer
        self._session: aiohttp.ClientSession | None = None

    def _client(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            self._session = aiohttp.ClientSession(
                connector=aiohttp.TCPConnector(limit=100, keepalive_timeout=30),
                json_serialize=json.dumps,
            )
        return self._session

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()

    async def allocate(self, url: str, body: dict[str, Any]) -> WebhookAnswer:
        started = time.perf_counter()
        status: int | None = None
        raw: bytes | None = None
        try:
            status, raw = await self._post(url, body)
            if not 200 <= status < 300:
                raise AllocationError(
                    400,
                    CUSTOM_ALLOCATION_FAILED,
                    f"Custom allocation failed with status code: {status}",
                )
            answer = parse_answer(raw, body["linkedHubs"])
        except AllocationError as error:
            self._observe(url, body, status, raw, started, error)
            raise
        self._observe(url, body, status, raw, started, None)
        return answer

    def _observe(
        self,
        url: str,
        body: dict[str, Any],
        status: int | None,
        raw: bytes | None,
        started: float,
        error: AllocationError | None,
    ) -> None:
        if self.observer is None:
            return
        seconds = time.perf_counter() - started
        try:
            self.observer(WebhookExchange(url, body, status, raw, seconds, error))
        except Exception:  # an observer's bug is never the device's
            log.exception("webhook observer %r failed", self.observer)

    async def _post(self, url: str, body: dict[str, Any]) -> tuple[int, bytes]:
        try:
            timeout = aiohttp.ClientTimeout(total=self.timeout_seconds)
            async with self._client().post(url, json=body, timeout=timeout) as response:
                return response.status, await read_limited(response.content, MAX_RESPONSE_BYTES)
        except TimeoutError:
            raise AllocationError(
                400,
                WEBHOOK_TIMEOUT,
                f"Custom allocation webhook did not answer within {self.timeout_seconds:g} s.",
            ) from None
        except (aiohttp.ClientError, OSError, ValueError) as exc:
            raise AllocationError(
                400,
                WEBHOOK_UNREACHABLE,
                f"Custom allocation webhook could not be reached: {exc or type(exc).__name__}.",
            ) from None


def parse_answer(raw: bytes, linked_hubs: list[str]) -> WebhookAnswer:
    """Check the webhook's AllocationResponse; each kind of mistake gets its own errorCode."""
    if len(raw) > MAX_RESPONSE_BYTES:
        raise AllocationError(
            400, WEBHOOK_BAD_RESPONSE, "Custom allocation webhook answered with more than 1 MB."
        )
    try:
        answer = json.loads(raw)
    except (UnicodeDecodeError, json.JSONDecodeError):
        raise AllocationError(
            400,
            WEBHOOK_BAD_RESPONSE,
            "Custom allocation webhook answered with a body that is not JSON: "
            + raw[:80].decode("utf-8", "replace"),
        ) from None
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


class WebhookAllocator:
    """The `custom` policy: asks the enrollment's webhook, as DPS does."""

    def __init__(self, client: WebhookClient) -> None:
        self.client = client

    async def allocate(self, request: AllocationRequest) -> Allocation:
        definition = request.enrollment.custom_allocation_definition
        assert definition is not None  # Allocators sends no enrollment without one here
        answer = await self.client.allocate(definition.webhook_url, webhook_body(request))
        return Allocation(answer.iot_hub_host_name, answer.initial_twin, answer.payload)


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
