"""SAS tokens valid too far ahead are refused (401004), for devices and for the service API:
a token that never really expires cannot be retired by waiting."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from devprov.attestation.sas import build_sas
from tests.conftest import Running, start_devprov
from tests.helpers import create_enrollment, device_token, primary_key, register

DAY = 24 * 3600


@pytest.fixture
async def one_day(tmp_path: Path) -> AsyncIterator[Running]:
    running = await start_devprov(
        tmp_path / "data", f"sqlite:///{tmp_path / 'devprov.db'}", sas_max_lifetime=DAY
    )
    yield running
    await running.devprov.close()


async def test_a_device_token_valid_for_longer_than_allowed_is_401004(one_day: Running) -> None:
    await one_day.service().link_hub("hub.example")
    key = primary_key(await create_enrollment(one_day, "dev-1"))
    resource = f"{one_day.id_scope}/registrations/dev-1"

    status, body, _ = await register(
        one_day, "dev-1", key, authorization=device_token(resource, key, ttl=2 * DAY)
    )

    assert status == 401
    assert body["errorCode"] == 401004
    assert "sas_max_lifetime" in body["message"]
    status, body, _ = await register(
        one_day, "dev-1", key, authorization=device_token(resource, key, ttl=DAY - 60)
    )
    assert status == 200, body


async def test_a_service_token_valid_for_longer_than_allowed_is_401004(one_day: Running) -> None:
    service = one_day.service()
    token = build_sas(
        service.host, service.key, ttl_seconds=100 * 365 * DAY, key_name=service.key_name
    )

    status, body, _ = await service.request(
        "GET", "/enrollmentGroups/none", headers={"Authorization": token}
    )

    assert status == 401
    assert body["errorCode"] == 401004
    status, _, _ = await service.request("GET", "/enrollmentGroups/none")
    assert status == 404
