"""Secrets at rest, end to end: a running devprov's database and data dir hold no secret in
plaintext; a data dir written before devprov sealed is sealed at start; `devprov keys rotate`
re-seals everything while devprov runs, and the old key is then not needed."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from cryptography.hazmat.primitives import serialization

from devprov.domain.keys import generate_key
from devprov.domain.policies import AccessPolicy
from devprov.domain.sealing import new_key
from devprov.instance import INSTANCE_FILE, Instance
from devprov.issuing_cas import IssuingCas
from devprov.keyring import KEY_FILE, encode_key, key_file
from devprov.server.tls import CA_KEY, SERVER_KEY, ensure_certificates, read_key, server_names
from devprov.store.connections import normalize_url
from devprov.store.database import Store
from devprov.store.schema import MIGRATIONS
from tests.cli.test_commands import devprov as cli
from tests.conftest import Running, start_devprov
from tests.helpers import create_enrollment, create_group, group_device_key, primary_key, register
from tests.secrets_support import database_text, leaked

HUB = "hub.example"


async def _fleet(running: Running) -> tuple[list[str], dict[str, str]]:
    """An enrollment, a group, a linked built-in hub, a registered device of each, and a
    credential policy; the secrets they hold, and each device's key."""
    enrollment = await create_enrollment(running, "dev-1")
    group = await create_group(running, "grp-1")
    await running.service().link_hub(HUB)
    keys = {"dev-1": primary_key(enrollment), "grp-dev-1": group_device_key(group, "grp-dev-1")}
    for registration_id, key in keys.items():
        status, body, _ = await register(running, registration_id, key)
        assert status == 200 and body["status"] == "assigned", body
    await IssuingCas(running.devprov.store, running.data_dir).create("certs")
    hub = await running.hub_connection_string(HUB)
    policies = running.devprov.instance.policies
    secrets = [
        *enrollment["attestation"]["symmetricKey"].values(),
        *group["attestation"]["symmetricKey"].values(),
        *keys.values(),
        hub,
        hub.rsplit("SharedAccessKey=", 1)[1],
        *(key for policy in policies for key in (policy.primary_key, policy.secondary_key)),
    ]
    return secrets, keys


def _private_keys(data_dir: Path, running: Running) -> list[str]:
    """The TLS key, the TLS CA key and the issuing CA keys, as their private numbers."""
    sealer = running.devprov.store.sealer
    assert sealer is not None
    found: list[Any] = [read_key(data_dir / "tls" / n, sealer) for n in (CA_KEY, SERVER_KEY)]
    for path in (data_dir / "credential-policies").rglob("*.key.pem"):
        pem = sealer.open(path.read_text())
        found.append(serialization.load_pem_private_key(pem, None))
    return [
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        ).decode()
        for key in found
    ]


def _data_dir_text(data_dir: Path) -> bytes:
    """Every file of the data dir but the key file (and SQLite's own files, searched apart)."""
    return b"\n".join(
        p.read_bytes()
        for p in sorted(data_dir.rglob("*"))
        if p.is_file() and p.name != KEY_FILE and not p.name.startswith("devprov.db")
    )


async def test_a_copy_of_the_database_or_data_dir_alone_reveals_no_secret(
    database_url: str, tmp_path: Path
) -> None:
    running = await start_devprov(tmp_path / "data", database_url)
    try:
        secrets, _ = await _fleet(running)
        private = _private_keys(running.data_dir, running)
    finally:
        await running.devprov.close()

    assert leaked(database_text(database_url), secrets) == []
    assert leaked(_data_dir_text(running.data_dir), secrets) == []
    pem_bodies = ["".join(pem.splitlines()[1:-1]) for pem in private]
    assert leaked(_data_dir_text(running.data_dir).replace(b"\n", b""), pem_bodies) == []
    assert (key_file(running.data_dir).stat().st_mode & 0o777) == 0o600


def _old_layout(data_dir: Path, database_url: str) -> dict[str, Any]:
    """A data dir as devprov wrote it before it sealed: schema at the revision before this
    one, every secret in plaintext (store, devprov.json, TLS keys, issuing CA keys)."""
    from alembic import command
    from alembic.config import Config

    engine = sa.create_engine(normalize_url(database_url))
    with engine.begin() as connection:
        config = Config()
        config.set_main_option("script_location", str(MIGRATIONS))
        config.attributes["connection"] = connection
        command.upgrade(config, "0008_payload_exchange")
    engine.dispose()
    data_dir.mkdir()
    owner = AccessPolicy(
        key_name="provisioningserviceowner",
        primary_key=generate_key(),
        secondary_key=generate_key(),
    )
    instance = Instance(id_scope="0ne00AAAA11", policies=[owner], database=database_url)
    (data_dir / INSTANCE_FILE).write_text(json.dumps(instance.model_dump(), indent=2))
    ensure_certificates(data_dir / "tls", server_names("localhost", []))  # plain PEM keys
    key = generate_key()
    enrollment = {
        "registrationId": "old-1",
        "attestation": {
            "type": "symmetricKey",
            "symmetricKey": {"primaryKey": key, "secondaryKey": generate_key()},
        },
        "provisioningStatus": "enabled",
        "etag": "e1",
    }

    async def write() -> None:
        from devprov.domain.records import Kind, Put

        store = Store.connect(database_url)  # no sealer: plaintext, as before
        try:
            await store.write(
                [Put(Kind.ENROLLMENT, "old-1", "e1", enrollment, {"attestation": "symmetricKey"})]
            )
        finally:
            await store.close()

    asyncio.run(write())
    return {"key": key, "owner": owner.model_dump(), "enrollment": enrollment}


async def test_a_data_dir_from_before_sealing_is_sealed_at_start(
    database_url: str, tmp_path: Path
) -> None:
    data_dir = tmp_path / "data"
    old = await asyncio.to_thread(_old_layout, data_dir, database_url)
    plain = [old["key"], old["owner"]["primary_key"], old["owner"]["secondary_key"]]
    assert len(leaked(database_text(database_url) + _data_dir_text(data_dir), plain)) == 3
    assert not key_file(data_dir).exists()

    running = await start_devprov(data_dir, database_url)
    try:
        assert running.devprov.instance.policies[0].primary_key == old["owner"]["primary_key"]
        await running.service().link_hub(HUB)  # with the policy key from the old devprov.json
        status, body, _ = await register(running, "old-1", old["key"])
        assert status == 200 and body["status"] == "assigned", body
        assert (await running.service().call("GET", "/enrollments/old-1"))["registrationId"]
    finally:
        await running.devprov.close()

    assert leaked(database_text(database_url), plain) == []
    assert leaked(_data_dir_text(data_dir), plain) == []
    for name in ("ca-key.pem", "server-key.pem"):
        assert b"ENCRYPTED PRIVATE KEY" in (data_dir / "tls" / name).read_bytes()


async def test_keys_rotate_reseals_everything_while_devprov_runs(
    database_url: str, tmp_path: Path
) -> None:
    data_dir = tmp_path / "data"
    running = await start_devprov(data_dir, database_url)
    try:
        secrets, keys = await _fleet(running)
        old_id = running.devprov.store.sealer.current_id  # type: ignore[union-attr]
        ran = await asyncio.to_thread(
            cli, "keys", "rotate", "--drop-old", "--data-dir", str(data_dir)
        )
        assert "re-sealed" in ran.stdout
        status = json.loads(
            (
                await asyncio.to_thread(
                    cli, "keys", "status", "--json", "--data-dir", str(data_dir)
                )
            ).stdout
        )
        assert status["current"] != old_id and status["keys"] == [status["current"]]
        assert set(status["sealed"]) == {status["current"]}

        # The running devprov: old devices register, the API works, and what it writes now is
        # sealed under the new key, which it took up from the key file.
        for registration_id, key in keys.items():
            code, body, _ = await register(running, registration_id, key)
            assert code == 200 and body["status"] == "assigned", body
        late = await create_enrollment(running, "dev-2")
        code, body, _ = await register(running, "dev-2", primary_key(late))
        assert code == 200 and body["status"] == "assigned", body
        assert running.devprov.store.sealer.current_id == status["current"]  # type: ignore[union-attr]
    finally:
        await running.devprov.close()

    assert leaked(database_text(database_url), secrets) == []
    again = await start_devprov(data_dir, database_url)  # only the new key in the key file
    try:
        for registration_id, key in [*keys.items(), ("dev-2", primary_key(late))]:
            code, body, _ = await register(again, registration_id, key)
            assert code == 200 and body["status"] == "assigned", body
        assert await again.service().call("GET", "/enrollments/dev-1")
        policy = await IssuingCas(again.devprov.store, data_dir).issuer("certs")
        assert policy is not None
    finally:
        await again.devprov.close()


async def test_the_environment_variable_wins_over_the_key_file(
    database_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    key = new_key()
    monkeypatch.setenv("DEVPROV_SECRET_KEY", encode_key(key))
    running = await start_devprov(tmp_path / "data", database_url)
    try:
        secrets, _ = await _fleet(running)
    finally:
        await running.devprov.close()
    assert not key_file(tmp_path / "data").exists()
    assert leaked(database_text(database_url), secrets) == []
    monkeypatch.delenv("DEVPROV_SECRET_KEY")
    with pytest.raises(Exception, match="no key file"):
        await start_devprov(tmp_path / "data", database_url)


async def test_the_wrong_key_is_told_in_one_line(database_url: str, tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    running = await start_devprov(data_dir, database_url)
    await running.devprov.close()
    original = key_file(data_dir).read_text()
    key_file(data_dir).write_text(encode_key(new_key()) + "\n")

    for command in (["info"], ["keys", "status"], ["enrollment", "list"]):
        ran = await asyncio.to_thread(cli, *command, "--data-dir", str(data_dir), check=False)
        assert ran.returncode == 1, command
        assert "which is not held" in ran.stderr and "Traceback" not in ran.stderr, ran.stderr
    key_file(data_dir).write_text(original)
    ran = await asyncio.to_thread(cli, "info", "--data-dir", str(data_dir))
    assert ran.returncode == 0


async def test_db_upgrade_seals_an_old_data_dir_without_serving(
    database_url: str, tmp_path: Path
) -> None:
    data_dir = tmp_path / "data"
    old = await asyncio.to_thread(_old_layout, data_dir, database_url)
    plain = [old["key"], old["owner"]["primary_key"], old["owner"]["secondary_key"]]

    ran = await asyncio.to_thread(cli, "db", "upgrade", "--data-dir", str(data_dir))

    assert "sealed the secrets of 1 records" in ran.stdout
    assert leaked(database_text(database_url) + _data_dir_text(data_dir), plain) == []
    assert b"ENCRYPTED PRIVATE KEY" in (data_dir / "tls" / SERVER_KEY).read_bytes()
    shown = await asyncio.to_thread(cli, "enrollment", "show", "old-1", "--data-dir", str(data_dir))
    assert "old-1" in shown.stdout
