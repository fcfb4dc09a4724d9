"""Secrets in the store: sealed as written, opened as read, sealed once when found in plaintext,
re-sealed under a new key; the database itself holds none of them (SQLite and PostgreSQL)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest

from devprov.domain.keys import generate_key
from devprov.domain.records import Kind, Put
from devprov.domain.sealing import Sealer, SealingError, new_key
from devprov.store.database import Store
from devprov.store.schema import migrate
from tests.secrets_support import database_text, leaked


def _enrollment(key: str, primary: str, secondary: str) -> dict[str, Any]:
    return {
        "registrationId": key,
        "attestation": {
            "type": "symmetricKey",
            "symmetricKey": {"primaryKey": primary, "secondaryKey": secondary},
        },
        "customAllocationDefinition": {
            "webhookUrl": "https://x",
            "webhookSecret": "hook-secret-42",
        },
    }


def _records() -> tuple[list[Put], list[str]]:
    secrets = [generate_key() for _ in range(6)]
    hub = f"HostName=hub.example;SharedAccessKeyName=iothubowner;SharedAccessKey={secrets[4]}"
    puts = [
        Put(Kind.ENROLLMENT, "dev-1", "e", _enrollment("dev-1", secrets[0], secrets[1])),
        Put(Kind.GROUP, "group-1", "e", _enrollment("group-1", secrets[2], secrets[3])),
        Put(
            Kind.LINKED_HUB,
            "hub.example",
            "e",
            {"hostName": "hub.example", "connectionString": hub},
        ),
        Put(
            Kind.HUB_DEVICE,
            "hub.example/dev-1",
            "e",
            {"deviceId": "dev-1", "authentication": {"symmetricKey": {"primaryKey": secrets[5]}}},
            {"hub_key": "hub.example"},
        ),
    ]
    return puts, [*secrets, hub, "hook-secret-42"]


@pytest.fixture
async def sealer() -> Sealer:
    return Sealer([new_key()])


@pytest.fixture
async def store(database_url: str, sealer: Sealer) -> AsyncIterator[Store]:
    migrate(database_url)
    opened = Store.connect(database_url, sealer)
    yield opened
    await opened.close()


async def test_secrets_are_sealed_in_the_database_and_plain_to_readers(
    store: Store, database_url: str
) -> None:
    puts, secrets = _records()
    await store.write(puts)

    assert leaked(database_text(database_url), secrets) == []
    for put in puts:
        stored = await store.get(put.kind, put.key)
        assert stored is not None and stored.document == put.document
    listed = await store.page(Kind.HUB_DEVICE, where={"hub_key": "hub.example"})
    assert listed[0].document == puts[3].document
    assert await store.sealed_by_key() == {store.sealer.current_id: 8}  # type: ignore[union-attr]


async def test_plaintext_left_by_an_older_devprov_is_sealed_once(
    database_url: str, sealer: Sealer
) -> None:
    migrate(database_url)
    puts, secrets = _records()
    older = Store.connect(database_url)  # no sealer: as devprov wrote before it sealed
    await older.write(puts)
    await older.close()
    assert len(leaked(database_text(database_url), secrets)) == len(secrets)

    store = Store.connect(database_url, sealer)
    try:
        assert await store.seal_secrets() == 4
        assert await store.seal_secrets() == 0  # done for this key: the pass is skipped
        if database_url.startswith("sqlite"):
            from devprov.store.schema import compact

            compact(database_url)  # what serve does after sealing: no plaintext in free pages
        assert leaked(database_text(database_url), secrets) == []
        for put in puts:
            stored = await store.get(put.kind, put.key)
            assert stored is not None and stored.document == put.document
    finally:
        await store.close()


async def test_a_new_key_reseals_everything_and_the_old_key_is_then_not_needed(
    database_url: str, store: Store, sealer: Sealer
) -> None:
    puts, _ = _records()
    await store.write(puts)
    new = new_key()
    rotating = Store.connect(database_url, Sealer([new, *sealer._raw.values()]))
    try:
        assert await rotating.seal_secrets() == 4
    finally:
        await rotating.close()

    only_new = Store.connect(database_url, Sealer([new]))
    try:
        for put in puts:
            stored = await only_new.get(put.kind, put.key)
            assert stored is not None and stored.document == put.document
    finally:
        await only_new.close()
    with pytest.raises(SealingError, match="not held"):
        await store.get(Kind.ENROLLMENT, "dev-1")  # the old key alone opens nothing now


async def test_a_value_that_looks_sealed_is_kept_as_given(store: Store) -> None:
    looks = "sealed:v1:00000000:not-really"
    document = _enrollment("dev-1", generate_key(), generate_key())
    document["customAllocationDefinition"]["webhookSecret"] = looks
    await store.write([Put(Kind.ENROLLMENT, "dev-1", "e", document)])
    stored = await store.get(Kind.ENROLLMENT, "dev-1")
    assert stored is not None
    assert stored.document["customAllocationDefinition"]["webhookSecret"] == looks
