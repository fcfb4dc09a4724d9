"""The `custom` policy: ask the enrollment's webhook (http/https) or in-process allocator
(`allocator://NAME`) with DPS's request body, and record the exchange."""

from __future__ import annotations

import logging
import time
from typing import Any
from urllib.parse import urlsplit

from devprov.allocation.allocator import Allocation, AllocationRequest
from devprov.allocation.exchanges import ExchangeLog
from devprov.allocation.functions import InProcessAllocators
from devprov.allocation.policies import AllocationError
from devprov.allocation.webhook import (
    WebhookAnswer,
    WebhookClient,
    check_answer,
    webhook_body,
)
from devprov.domain.enrollments import IN_PROCESS_SCHEME, enrollment_id
from devprov.domain.exchanges import Exchange, redact_url
from devprov.domain.json_text import JsonRefused, parse_json
from devprov.domain.models import IndividualEnrollment

log = logging.getLogger(__name__)


def _answer_document(raw: bytes | None) -> Any:
    """What the webhook answered, as JSON when it is JSON (the log shows it as it came)."""
    if not raw:
        return None
    try:
        return parse_json(raw)
    except JsonRefused:
        return {"text": raw[:4096].decode("utf-8", "replace")}


class CustomAllocator:
    """Webhooks over HTTP, or the operator's functions; each exchange goes to `exchanges`."""

    def __init__(
        self,
        webhooks: WebhookClient,
        functions: InProcessAllocators | None = None,
        exchanges: ExchangeLog | None = None,
    ) -> None:
        self.webhooks = webhooks
        self.functions = functions or InProcessAllocators({}, webhooks.timeout_seconds)
        self.exchanges = exchanges

    async def allocate(self, request: AllocationRequest) -> Allocation:
        definition = request.enrollment.custom_allocation_definition
        assert definition is not None  # Allocators sends no enrollment without one here
        body = webhook_body(request)
        started = time.perf_counter()
        url = definition.webhook_url
        target = url
        answer_document: Any = None
        status: int | None = None
        attempts: list[dict[str, Any]] = []
        error: AllocationError | None = None
        answer: WebhookAnswer | None = None
        if urlsplit(url).scheme == IN_PROCESS_SCHEME:
            name = urlsplit(url).netloc
            target = f"{IN_PROCESS_SCHEME}://{name}"
            try:
                answer_document = await self.functions.call(name, body)
                answer = check_answer(answer_document, body["linkedHubs"])
            except AllocationError as refusal:
                error = refusal
        else:
            target = redact_url(url)
            exchanged = await self.webhooks.exchange(url, body, definition.webhook_secret)
            status, error, answer = exchanged.status, exchanged.error, exchanged.answer
            answer_document = _answer_document(exchanged.raw)
            attempts = [
                {"status": a.status, "error": a.error, "ms": round(a.seconds * 1000, 3)}
                for a in exchanged.attempts
            ]
        if self.exchanges is not None:
            await self._record(
                Exchange(
                    registration_id=request.registration_id,
                    enrollment_kind=(
                        "individualEnrollment"
                        if isinstance(request.enrollment, IndividualEnrollment)
                        else "enrollmentGroup"
                    ),
                    enrollment_id=enrollment_id(request.enrollment),
                    target=target,
                    request=body,
                    answer=answer_document,
                    status=status,
                    error=(
                        {"errorCode": error.error_code, "message": error.message} if error else None
                    ),
                    duration_ms=round((time.perf_counter() - started) * 1000, 3),
                    attempts=attempts,
                )
            )
        if error is not None:
            raise error
        assert answer is not None
        return Allocation(answer.iot_hub_host_name, answer.initial_twin, answer.payload)

    async def _record(self, exchange: Exchange) -> None:
        """A log that cannot be written must not fail the registration."""
        assert self.exchanges is not None
        try:
            await self.exchanges.record(exchange)
        except Exception:
            log.exception("could not record the exchange of %s", exchange.registration_id)
