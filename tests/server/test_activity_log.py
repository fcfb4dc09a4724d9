"""The log lines of registrations and service calls: what they say, and what they never say."""

from __future__ import annotations

import json
import logging
from typing import Any

import pytest

from devprov.log_format import JsonFormatter, TextFormatter
from tests.conftest import Running, Webhook
from tests.helpers import create_group, custom_allocation, group_device_key, register


def lines(caplog: pytest.LogCaptureFixture, logger: str) -> list[dict[str, Any]]:
    formatter = JsonFormatter()
    return [json.loads(formatter.format(r)) for r in caplog.records if r.name == logger]


async def test_one_line_per_outcome_and_per_service_call(
    devprov: Running, webhook: Webhook, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="devprov")
    await devprov.service().link_hub("hub-1.example")
    group = await create_group(devprov, "fleet")
    key = group_device_key(group, "dev-1")
    status, _, headers = await register(devprov, "dev-1", key, payload={"secret": "payload"})
    assert status == 200
    assert (await register(devprov, "dev-2", key))[0] == 401
    fields = await custom_allocation(devprov, webhook, ["hub-1.example"], None)
    hooked = await create_group(devprov, "hooked", **fields)
    webhook.answer({}, status=500)
    await register(devprov, "dev-3", group_device_key(hooked, "dev-3"))

    registrations = lines(caplog, "devprov.registrations")
    by_id = {line["registrationId"]: line for line in registrations}
    assert len(registrations) == 3
    assigned = by_id["dev-1"]
    assert assigned["outcome"] == "assigned" and assigned["hub"] == "hub-1.example"
    assert assigned["trackingId"] == headers["x-ms-request-id"]
    assert assigned["transport"] == "https" and assigned["enrollmentGroup"] == "fleet"
    assert isinstance(assigned["ms"], float)
    assert {"allocationMs", "placementMs", "storeMs"} <= set(assigned)
    refused = by_id["dev-2"]
    assert (refused["outcome"], refused["errorCode"], refused["level"]) == (
        "refused",
        401000,
        "INFO",
    )
    failed = by_id["dev-3"]
    assert (failed["outcome"], failed["errorCode"], failed["level"]) == (
        "failed",
        400207,
        "WARNING",
    )

    calls = lines(caplog, "devprov.service")
    assert calls and all(call["policy"] == "provisioningserviceowner" for call in calls)
    put = next(call for call in calls if call["method"] == "PUT")
    assert put["status"] == 200 and put["path"].startswith("/")
    assert isinstance(put["trackingId"], str)

    everything = "\n".join(TextFormatter().format(r) for r in caplog.records)
    for secret in (key, group["attestation"]["symmetricKey"]["primaryKey"], "code=secret"):
        assert secret not in everything
    assert "secret" not in everything  # nor what the device sent
    assert devprov.connection_string not in everything


async def test_a_refused_service_call_is_logged_with_its_code(
    devprov: Running, caplog: pytest.LogCaptureFixture
) -> None:
    from tests.helpers import device_request

    caplog.set_level(logging.INFO, logger="devprov")
    status, _, _ = await device_request(
        devprov, "GET", "/enrollments/x?api-version=2021-10-01", authorization="nope"
    )
    assert status == 401
    (call,) = lines(caplog, "devprov.service")
    assert (call["status"], call["errorCode"], call.get("policy")) == (401, 401000, None)


def test_text_lines_put_fields_after_the_message() -> None:
    record = logging.LogRecord("devprov.x", logging.INFO, "", 0, "registration assigned", (), None)
    record.fields = {"registrationId": "dev 1", "ms": 1.5, "hub": None, "n": 3}
    line = TextFormatter().format(record)
    assert line.endswith('registration assigned registrationId="dev 1" ms=1.5 n=3')
    parsed = json.loads(JsonFormatter().format(record))
    assert parsed["registrationId"] == "dev 1" and "hub" not in parsed
    assert parsed["time"].endswith("Z") and parsed["level"] == "INFO"
