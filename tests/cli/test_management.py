"""Enrollment management from the command line: update changes only what is given, every setting
has its flag, listings are tables for people and JSON for scripts, settings and versions shown."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

from tests.cli.test_commands import devprov


def init(tmp_path: Path, database_url: str) -> str:
    devprov("init", "--data-dir", str(tmp_path), "--db", database_url)
    return str(tmp_path)


def shown(data: str, kind: str, record_id: str) -> dict[str, object]:
    record: dict[str, object] = json.loads(
        devprov(kind, "show", record_id, "--keys", "--json", "--data-dir", data).stdout
    )
    return record


def test_update_changes_only_what_is_given(tmp_path: Path, database_url: str) -> None:
    data = init(tmp_path, database_url)
    devprov("hub", "add", "hub-1.example", "--data-dir", data)
    devprov("hub", "add", "hub-2.example", "--data-dir", data)
    twin = tmp_path / "twin.json"
    twin.write_text(json.dumps({"tags": {"site": "north"}, "properties": {"desired": {"x": 1}}}))
    devprov(
        "group", "create", "g", "--webhook", "https://alloc.example/", "--hub", "hub-1.example",
        "--initial-twin", str(twin), "--reprovision", "reset", "--iot-edge", "--data-dir", data,
    )  # fmt: skip
    before = shown(data, "group", "g")
    assert before["initialTwin"] == {"tags": {"site": "north"}, "properties": {"desired": {"x": 1}}}
    assert before["reprovisionPolicy"] == {"updateHubAssignment": True, "migrateDeviceData": False}
    assert before["capabilities"] == {"iotEdge": True}
    assert before["allocationPolicy"] == "custom"

    devprov("group", "update", "g", "--disable", "--data-dir", data)
    disabled = shown(data, "group", "g")
    assert disabled["provisioningStatus"] == "disabled"
    unchanged = ("attestation", "customAllocationDefinition", "iotHubs", "initialTwin")
    for name in (*unchanged, "reprovisionPolicy", "capabilities", "allocationPolicy"):
        assert disabled[name] == before[name], name

    devprov(
        "group", "update", "g", "--enable", "--hub", "hub-2.example", "--allocation", "hashed",
        "--reprovision", "never", "--no-iot-edge", "--data-dir", data,
    )  # fmt: skip
    after = shown(data, "group", "g")
    assert after["provisioningStatus"] == "enabled"
    assert after["iotHubs"] == ["hub-2.example"]
    assert after["allocationPolicy"] == "hashed"
    assert after["reprovisionPolicy"] == {"updateHubAssignment": False, "migrateDeviceData": False}
    assert after["capabilities"] == {"iotEdge": False}
    assert after["attestation"] == before["attestation"]  # the keys too
    assert after["initialTwin"] == before["initialTwin"]

    refused = devprov(
        "group", "update", "g", "--hub", "hub-3.example", "--data-dir", data, check=False
    )
    assert refused.returncode == 1 and "not linked" in refused.stderr
    assert shown(data, "group", "g")["iotHubs"] == ["hub-2.example"]


def test_enrollment_update_keeps_its_keys_unless_given(tmp_path: Path, database_url: str) -> None:
    data = init(tmp_path, database_url)
    created = json.loads(devprov("enrollment", "create", "dev-1", "--data-dir", data).stdout)
    keys = created["attestation"]["symmetricKey"]
    devprov("enrollment", "update", "dev-1", "--disable", "--data-dir", data)
    assert shown(data, "enrollment", "dev-1")["attestation"]["symmetricKey"] == keys  # type: ignore[index]
    devprov(
        "enrollment",
        "update",
        "dev-1",
        "--key",
        "a2tra2tra2tra2tra2tra2tra2tra2tra2tra2tra2s=",
        "--data-dir",
        data,
    )
    changed = shown(data, "enrollment", "dev-1")["attestation"]["symmetricKey"]  # type: ignore[index]
    assert changed == {
        "primaryKey": "a2tra2tra2tra2tra2tra2tra2tra2tra2tra2tra2s=",
        "secondaryKey": keys["secondaryKey"],
    }
    plain = json.loads(devprov("enrollment", "show", "dev-1", "--json", "--data-dir", data).stdout)
    assert "symmetricKey" not in plain["attestation"]  # keys only with --keys


def test_listings_are_tables_for_people_and_json_arrays_for_scripts(
    tmp_path: Path, database_url: str
) -> None:
    data = init(tmp_path, database_url)
    devprov("hub", "add", "hub-1.example", "--data-dir", data)
    devprov("group", "create", "g", "--data-dir", data)
    devprov("enrollment", "create", "dev-1", "--data-dir", data)
    for command, field, value in [
        (["hub", "list"], "hostName", "hub-1.example"),
        (["group", "list"], "enrollmentGroupId", "g"),
        (["enrollment", "list"], "registrationId", "dev-1"),
    ]:
        listed = json.loads(devprov(*command, "--json", "--data-dir", data).stdout)
        assert isinstance(listed, list) and [item[field] for item in listed] == [value]
        table = devprov(*command, "--data-dir", data).stdout
        assert value in table and "┃" in table  # a table, not JSON
    registrations = devprov("registration", "list", "g", "--json", "--data-dir", data).stdout
    assert json.loads(registrations) == []


def test_info_never_cuts_the_connection_string(tmp_path: Path) -> None:
    devprov("init", "--data-dir", str(tmp_path))
    details = json.loads(devprov("info", "--json", "--data-dir", str(tmp_path)).stdout)
    ran = subprocess.run(
        [sys.executable, "-m", "devprov.cli", "info", "--data-dir", str(tmp_path)],
        capture_output=True, text=True, env={"COLUMNS": "80", "PATH": "/usr/bin"}, check=True,
    )  # fmt: skip
    assert f"serviceConnectionString: {details['serviceConnectionString']}\n" in ran.stdout


def test_version() -> None:
    from importlib.metadata import version

    assert devprov("--version").stdout == f"devprov {version('devprov')}\n"


def test_help_imports_neither_the_store_nor_the_network_nor_pydantic_settings() -> None:
    """What keeps `devprov --help` fast (BENCHMARKS.md has the figure): the commands import
    what they need when they run."""
    probe = (
        "import sys, devprov.cli\n"
        "heavy = ['sqlalchemy', 'aiohttp', 'pydantic_settings', 'alembic', 'cryptography',"
        " 'devprov.bench.runner', 'devprov.store.database']\n"
        "print([name for name in heavy if name in sys.modules])"
    )
    ran = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True)
    assert ran.stdout.strip() == "[]"


def test_config_show_layers_file_env_and_flags_and_hides_secrets(tmp_path: Path) -> None:
    settings = tmp_path / "devprov.toml"
    settings.write_text(
        'https_port = 8443\nmqtt_port = 8884\nwebhook_secret = "s3cret"\n'
        'db = "postgresql://devprov:pa55word@db.example/devprov"\n'
    )
    env = {"PATH": "/usr/bin", "DEVPROV_CONFIG": str(settings), "DEVPROV_MQTT_PORT": "9884"}
    ran = subprocess.run(
        [sys.executable, "-m", "devprov.cli", "config", "show", "--json"],
        capture_output=True, text=True, env=env, check=True, cwd=tmp_path,
    )  # fmt: skip
    shown = json.loads(ran.stdout)
    assert shown["https_port"] == 8443  # the file
    assert shown["mqtt_port"] == 9884  # the environment wins over the file
    assert shown["webhook_secret"] == "(hidden)"
    assert "s3cret" not in ran.stdout
    assert shown["db"] == "postgresql://devprov:(hidden)@db.example/devprov"
    readable = subprocess.run(
        [sys.executable, "-m", "devprov.cli", "config", "show", "--data-dir", "flagged"],
        capture_output=True, text=True, env={**env, "COLUMNS": "200"}, check=True, cwd=tmp_path,
    )  # fmt: skip
    assert 'data_dir = "flagged"  (flag)' in readable.stdout
    assert "mqtt_port = 9884  (env DEVPROV_MQTT_PORT)" in readable.stdout
    assert f"https_port = 8443  (file {settings})" in readable.stdout
    assert "s3cret" not in readable.stdout


def test_the_cli_defaults_are_the_settings_and_domain_defaults() -> None:
    """The CLI repeats two defaults so as not to import pydantic-settings or the domain for
    --help; they must stay the same."""
    from devprov.cli import common, credentials
    from devprov.domain.credentials import DEFAULT_VALIDITY_DAYS
    from devprov.settings import DEFAULT_DATA_DIR

    assert common.DEFAULT_DATA_DIR == DEFAULT_DATA_DIR
    assert credentials.DEFAULT_VALIDITY_DAYS == DEFAULT_VALIDITY_DAYS


def test_a_long_listing_is_paged_on_a_terminal_and_printed_whole_into_a_pipe(
    tmp_path: Path,
) -> None:
    import os
    import pty

    data = str(tmp_path / "data")
    devprov("init", "--data-dir", data)
    seed = tmp_path / "groups.jsonl"
    seed.write_text(
        "".join(
            json.dumps({"kind": "group", "record": {"enrollmentGroupId": f"g{n:02d}",
                        "attestation": {"type": "symmetricKey"}}}) + "\n"
            for n in range(40)
        )
    )  # fmt: skip
    devprov("import", str(seed), "--data-dir", data)
    paged = tmp_path / "paged.txt"
    env = {"PATH": "/usr/bin:/bin", "PAGER": f"cat > {paged}", "LINES": "10", "COLUMNS": "100"}
    command = [sys.executable, "-m", "devprov.cli", "group", "list", "--data-dir", data]

    primary, terminal = pty.openpty()
    try:
        subprocess.run(command, stdin=terminal, stdout=terminal, env=env, check=True, timeout=120)
    finally:
        os.close(terminal)
        os.close(primary)
    assert "g00" in paged.read_text() and "g39" in paged.read_text()

    paged.unlink()
    piped = subprocess.run(command, capture_output=True, text=True, env=env, check=True)
    assert not paged.exists()
    assert "g00" in piped.stdout and "g39" in piped.stdout


NO_JSON = {
    ("serve",): "runs until stopped",
    ("export",): "prints JSON Lines already",
    ("bench-seed",): "a benchmark's set-up",
    ("bench-idle",): "a benchmark's load",
    ("bench-slowloris",): "a benchmark's load",
    ("webhook", "serve"): "runs until stopped",
}


def test_every_command_takes_json() -> None:
    import typer.main

    from devprov.cli import app

    without = []

    def walk(command: Any, path: tuple[str, ...]) -> None:
        for name, sub in (getattr(command, "commands", None) or {}).items():
            walk(sub, (*path, name))
        if not getattr(command, "commands", None):
            options = {option for param in command.params for option in param.opts}
            if "--json" not in options and path not in NO_JSON:
                without.append(" ".join(path))

    walk(typer.main.get_command(app), ())
    assert without == []


def test_what_a_command_did_is_json_with_json(tmp_path: Path) -> None:
    data = str(tmp_path)
    made = json.loads(devprov("init", "--data-dir", data, "--json").stdout)
    assert made["dataDir"] == data and made["idScope"].startswith("0ne")
    devprov("group", "create", "g", "--data-dir", data, "--json")
    deleted = devprov("group", "delete", "g", "--data-dir", data, "--json").stdout
    assert json.loads(deleted) == {"deleted": "g"}


def test_hub_update_changes_only_what_is_given(tmp_path: Path, database_url: str) -> None:
    data = init(tmp_path, database_url)
    secret = "Url=https://web.example/devices;Secret=s3cret-s3cret-s3cret"
    devprov(
        "hub", "add", "web.example", "--connector", "http", "--connection-string", secret,
        "--location", "north", "--data-dir", data,
    )  # fmt: skip
    devprov("hub", "update", "web.example", "--weight", "9", "--data-dir", data)
    exported = tmp_path / "out.jsonl"
    devprov("export", "--out", str(exported), "--data-dir", data)
    hub = json.loads(exported.read_text().splitlines()[0])["record"]
    assert (hub["connector"], hub["allocationWeight"], hub["location"]) == ("http", 9, "north")
    assert hub["connectionString"] == secret
    missing = devprov(
        "hub", "update", "nosuch.example", "--weight", "2", "--data-dir", data, check=False
    )
    assert missing.returncode == 1 and "not linked" in missing.stderr
