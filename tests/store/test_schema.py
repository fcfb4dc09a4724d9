"""The schema: migrations bring an older database to the newest revision, explicitly."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import sqlalchemy as sa
from alembic import command
from alembic.config import Config

from devprov.domain.sealing import new_key
from devprov.keyring import KEY_VARIABLE, encode_key
from devprov.store.connections import normalize_url
from devprov.store.schema import MIGRATIONS, current_revision, head_revision, is_current, migrate


def _upgrade_to(url: str, revision: str) -> None:
    engine = sa.create_engine(normalize_url(url))
    with engine.begin() as connection:
        config = Config()
        config.set_main_option("script_location", str(MIGRATIONS))
        config.attributes["connection"] = connection
        command.upgrade(config, revision)
    engine.dispose()


def test_attestation_column_is_filled_in_for_existing_enrollments(database_url: str) -> None:
    _upgrade_to(database_url, "0004")
    engine = sa.create_engine(normalize_url(database_url))
    document = {"registrationId": "old", "attestation": {"type": "x509", "x509": {}}}
    with engine.begin() as connection:
        connection.execute(
            sa.text(
                "INSERT INTO enrollments (key, etag, document, updated_at)"
                " VALUES ('old', 'e', :document, 0)"
            ),
            {"document": json.dumps(document)},
        )

    migrate(database_url)

    with engine.connect() as connection:
        kind = connection.execute(
            sa.text("SELECT attestation FROM enrollments WHERE key = 'old'")
        ).scalar_one()
        revisions = connection.execute(sa.text("SELECT count(*) FROM revisions")).scalar_one()
    engine.dispose()
    assert kind == "x509"
    assert revisions == 5  # credential policies are revised too


def test_a_database_is_current_only_once_migrated(database_url: str) -> None:
    assert current_revision(database_url) is None
    assert not is_current(database_url)
    _upgrade_to(database_url, "0004")
    assert current_revision(database_url) == "0004"
    assert not is_current(database_url)

    migrate(database_url)

    assert current_revision(database_url) == head_revision()
    assert is_current(database_url)


def test_the_registry_connector_becomes_the_built_in_hub(database_url: str) -> None:
    """Data dirs from before the built-in hub keep working: their `registry` hubs become
    `builtin` ones with a connection string of their own, their devices the registry's shape."""
    _upgrade_to(database_url, "0005")
    engine = sa.create_engine(normalize_url(database_url))
    old_device = {
        "deviceId": "dev-1",
        "hubHostName": "hub.example",
        "registrationId": "dev-1",
        "authentication": {"type": "sas", "symmetricKey": {"primaryKey": "a", "secondaryKey": "b"}},
        "capabilities": {"iotEdge": False},
        "twin": {"tags": {"t": 1}, "properties": {"desired": {"d": 2}}},
    }
    with engine.begin() as connection:
        for table, key, document, extra in (
            ("linked_hubs", "hub.example", {"hostName": "hub.example"}, {}),
            ("hub_devices", "hub.example/dev-1", old_device, {"hub_key": "hub.example"}),
        ):
            columns = ", ".join(["key", "etag", "document", "updated_at", *extra])
            values = ", ".join(
                [":key", "'e'", ":document", "0", *(f"'{v}'" for v in extra.values())]
            )
            connection.execute(
                sa.text(f"INSERT INTO {table} ({columns}) VALUES ({values})"),
                {"key": key, "document": json.dumps(document)},
            )

    migrate(database_url)

    with engine.connect() as connection:
        hub = connection.execute(sa.text("SELECT document FROM linked_hubs")).scalar_one()
        device = connection.execute(sa.text("SELECT document FROM hub_devices")).scalar_one()
    engine.dispose()
    hub = json.loads(hub) if isinstance(hub, str) else hub
    device = json.loads(device) if isinstance(device, str) else device
    assert hub["connector"] == "builtin"
    assert hub["connectionString"].startswith(
        "HostName=hub.example;SharedAccessKeyName=iothubowner;"
    )
    assert device["status"] == "enabled" and device["etag"]
    assert device["twin"]["tags"] == {"t": 1}
    assert device["twin"]["properties"]["desired"]["d"] == 2
    assert device["twin"]["properties"]["desired"]["$version"] == 1
    assert device["twin"]["properties"]["reported"]["$version"] == 1


def test_nodes_starting_together_migrate_once_and_join_one_deployment(
    database_url: str, tmp_path: Path
) -> None:
    """Three `devprov init`s (what `serve` does first) on one empty store at the same moment:
    one of them runs each migration (the others wait on the lock, then find nothing to do), and
    all take the same identity."""
    if not database_url.startswith("postgresql"):
        pytest.skip("SQLite is one file on one host: its nodes are `serve --workers`")
    script = (
        "import logging, sys;"
        "logging.basicConfig(level=logging.INFO, stream=sys.stdout, format='%(message)s');"
        "from devprov.settings import Settings; from devprov.wiring import prepare;"
        "instance, _ = prepare(Settings(data_dir=sys.argv[1], db=sys.argv[2]));"
        "print('scope', instance.id_scope)"
    )
    shared_key = {**os.environ, KEY_VARIABLE: encode_key(new_key())}  # one deployment, one key
    starting = [
        subprocess.Popen(
            [sys.executable, "-c", script, str(tmp_path / f"node{n}"), database_url],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            env=shared_key,
        )
        for n in range(3)
    ]
    outputs = [process.communicate(timeout=300)[0].decode() for process in starting]
    assert [process.returncode for process in starting] == [0, 0, 0], outputs
    ran = [line for text in outputs for line in text.splitlines() if "Running upgrade" in line]
    steps = [line.split("Running upgrade", 1)[1] for line in ran]
    assert len(steps) == len(set(steps)), ran  # no step ran twice
    assert any("-> 0001" in step for step in steps)  # and they did run, once
    scopes = {line for text in outputs for line in text.splitlines() if line.startswith("scope")}
    assert len(scopes) == 1, outputs
    assert is_current(database_url)
