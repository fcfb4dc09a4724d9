"""The ordinary mistakes, made as a new user makes them: each is one line on stderr, exit 1, what
to do, no traceback (unless --debug), and nothing is created or changed.

`devprov` runs as a process of its own here, as a user runs it.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.cli.test_commands import devprov as run_in_process
from tests.conftest import PG_ADMIN, free_port

NOBODY = ("setpriv", "--reuid=65534", "--regid=65534", "--clear-groups")
as_nobody = pytest.mark.skipif(
    os.geteuid() != 0 or shutil.which("setpriv") is None,
    reason="needs root and setpriv to run devprov as an ordinary user",
)


def devprov(
    *args: str,
    cwd: Path | None = None,
    env: dict[str, str] | None = None,
    user: tuple[str, ...] = (),
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*user, sys.executable, "-m", "devprov.cli", *args],
        capture_output=True,
        text=True,
        cwd=cwd,
        env={**os.environ, "COLUMNS": "300", **(env or {})},
        timeout=120,
    )


def one_line_error(ran: subprocess.CompletedProcess[str], *says: str) -> str:
    """Exit 1, and stderr is one line starting `error:` that says each of `says`."""
    assert ran.returncode == 1, (ran.returncode, ran.stdout, ran.stderr)
    assert ran.stderr.startswith("error"), ran.stderr
    assert ran.stderr.count("\n") == 1, ran.stderr  # one line: no traceback
    assert "Traceback" not in ran.stderr + ran.stdout
    for text in says:
        assert text in ran.stderr, (text, ran.stderr)
    return ran.stderr


def ports(*values: int) -> list[str]:
    https, mqtt, amqp = values
    return ["--https-port", str(https), "--mqtt-port", str(mqtt), "--amqp-port", str(amqp)]


def free_ports() -> list[str]:
    return ports(free_port(), free_port(), free_port())


@pytest.fixture
def shared_dir() -> Iterator[Path]:
    """A directory an ordinary user may enter (pytest's tmp_path is root's alone)."""
    base = Path("/tmp") / f"devprov-cli-{os.getpid()}-{free_port()}"
    base.mkdir(mode=0o755)
    base.chmod(0o755)
    yield base
    shutil.rmtree(base, ignore_errors=True)


@pytest.mark.parametrize("command", [["info"], ["group", "create", "lost"], ["hub", "list"]])
def test_a_command_run_elsewhere_creates_no_store(tmp_path: Path, command: list[str]) -> None:
    ran = devprov(*command, cwd=tmp_path, env={"DEVPROV_DATA_DIR": ""})
    one_line_error(
        ran,
        f"no devprov data dir at {tmp_path / 'devprov-data'}",
        "--data-dir",
        "DEVPROV_DATA_DIR",
        "settings file",
        "devprov init",
    )
    assert list(tmp_path.iterdir()) == []


def test_the_settings_file_points_commands_at_the_data_dir(tmp_path: Path) -> None:
    data = tmp_path / "elsewhere"
    run_in_process("init", "--data-dir", str(data))
    settings = tmp_path / "devprov.toml"
    settings.write_text(f'data_dir = "{data}"\n')
    elsewhere = tmp_path / "cwd"
    elsewhere.mkdir()
    ran = devprov("group", "create", "g", cwd=elsewhere, env={"DEVPROV_CONFIG": str(settings)})
    assert ran.returncode == 0, ran.stderr
    listed = devprov("group", "list", "--json", "--data-dir", str(data))
    assert [group["enrollmentGroupId"] for group in json.loads(listed.stdout)] == ["g"]
    assert list(elsewhere.iterdir()) == []


def test_a_port_in_use_is_told_before_anything_is_made_or_printed(tmp_path: Path) -> None:
    taken = socket.socket()
    taken.bind(("127.0.0.1", 0))
    taken.listen()
    port = taken.getsockname()[1]
    try:
        ran = devprov(
            "serve", "--data-dir", str(tmp_path / "data"), "--host", "127.0.0.1",
            *ports(free_port(), port, free_port()),
        )  # fmt: skip
    finally:
        taken.close()
    one_line_error(ran, f"port {port} on 127.0.0.1 is in use", "--mqtt-port")
    assert "id scope" not in ran.stdout + ran.stderr  # no banner
    assert not (tmp_path / "data").exists()


@as_nobody
def test_a_port_below_1024_without_root_is_told(shared_dir: Path) -> None:
    (shared_dir / "writable").mkdir(mode=0o777)
    (shared_dir / "writable").chmod(0o777)
    data = shared_dir / "writable" / "data"
    ran = devprov(
        "serve", "--data-dir", str(data), "--host", "127.0.0.1", *ports(443, 8883, 5671),
        cwd=shared_dir, user=NOBODY,
    )  # fmt: skip
    one_line_error(ran, "port 443 is below 1024 and needs root", "--https-port")
    assert not data.exists()


@as_nobody
@pytest.mark.parametrize("command", ["serve", "init"])
def test_a_data_dir_that_is_not_writable_is_told(shared_dir: Path, command: str) -> None:
    data = shared_dir / "data"  # shared_dir is root's, 0755
    extra = ["--host", "127.0.0.1", *free_ports()] if command == "serve" else []
    ran = devprov(command, "--data-dir", str(data), *extra, cwd=shared_dir, user=NOBODY)
    one_line_error(ran, f"the data dir {data} is not writable", "--data-dir")
    assert not data.exists()


def _missing_database() -> str:
    base, _, query = PG_ADMIN.partition("?")
    return f"{base.rsplit('/', 1)[0]}/devprov_no_such_db" + (f"?{query}" if query else "")


@pytest.mark.parametrize("command", ["serve", "init"])
def test_a_postgresql_database_that_does_not_exist_is_told(tmp_path: Path, command: str) -> None:
    extra = ["--host", "127.0.0.1", *free_ports()] if command == "serve" else []
    ran = devprov(
        command, "--data-dir", str(tmp_path / "data"), "--db", _missing_database(), *extra
    )
    one_line_error(ran, "could not be reached", "does not exist", "createdb")
    assert not (tmp_path / "data").exists()


def test_an_unreachable_database_is_one_line_and_debug_shows_the_traceback(tmp_path: Path) -> None:
    from devprov.instance import ensure_instance

    ensure_instance(tmp_path, database="postgresql://nobody@127.0.0.1:1/devprov")
    before = (tmp_path / "devprov.json").read_text()
    ran = devprov("hub", "list", "--data-dir", str(tmp_path))
    one_line_error(ran, "the database could not be reached", "--db")
    debugged = devprov("--debug", "hub", "list", "--data-dir", str(tmp_path))
    assert debugged.returncode == 1 and "Traceback" in debugged.stderr
    assert (tmp_path / "devprov.json").read_text() == before


def test_device_register_with_the_server_down(tmp_path: Path) -> None:
    run_in_process("init", "--data-dir", str(tmp_path))
    down = str(free_port())
    ran = devprov(
        "device", "register", "dev-1", "--key", "aGVsbG8=", "--host", "127.0.0.1",
        "--port", down, "--data-dir", str(tmp_path),
    )  # fmt: skip
    one_line_error(ran, f"cannot reach devprov at https://127.0.0.1:{down}", "devprov serve")


@pytest.mark.parametrize(
    "command",
    [
        ["device", "register", "dev-1", "--key", "not base64!"],
        ["device", "register", "dev-1", "--group-key", "%%%"],
        ["enrollment", "create", "dev-1", "--key", "not base64!"],
        ["group", "create", "g", "--secondary-key", "no"],
    ],
)
def test_a_key_that_is_not_base64(tmp_path: Path, database_url: str, command: list[str]) -> None:
    run_in_process("init", "--data-dir", str(tmp_path), "--db", database_url)
    ran = devprov(*command, "--data-dir", str(tmp_path))
    one_line_error(ran, "is not base64")
    for listing in ("enrollment", "group"):
        assert run_in_process(listing, "list", "--json", "--data-dir", str(tmp_path)).stdout == (
            "[]\n"
        )


@pytest.mark.parametrize(
    ("command", "says"),
    [
        (["group", "create", "bad", "--ca", "nosuch"], "no CA named 'nosuch'"),
        (["group", "create", "bad", "--hub", "unlinked.example"], "not linked"),
        (["enrollment", "create", "bad", "--hub", "not a host!"], "not a DNS host name"),
        (["hub", "add", "not a host!"], "not a DNS host name"),
    ],
)
def test_bad_references_are_refused(
    tmp_path: Path, database_url: str, command: list[str], says: str
) -> None:
    run_in_process("init", "--data-dir", str(tmp_path), "--db", database_url)
    one_line_error(devprov(*command, "--data-dir", str(tmp_path)), says)
    for listing in ("enrollment", "group", "hub"):
        shown = run_in_process(listing, "list", "--json", "--data-dir", str(tmp_path)).stdout
        assert json.loads(shown) == []


def test_create_on_an_existing_group_changes_nothing(tmp_path: Path, database_url: str) -> None:
    data = str(tmp_path)
    run_in_process("init", "--data-dir", data, "--db", database_url)
    run_in_process("hub", "add", "hub-1.example", "--data-dir", data)
    run_in_process(
        "group", "create", "g2", "--webhook", "https://alloc.example/", "--hub", "hub-1.example",
        "--data-dir", data,
    )  # fmt: skip
    before = run_in_process("group", "show", "g2", "--keys", "--json", "--data-dir", data).stdout
    ran = devprov("group", "create", "g2", "--disabled", "--data-dir", data)
    one_line_error(ran, "group 'g2' exists already", "devprov group update g2")
    after = run_in_process("group", "show", "g2", "--keys", "--json", "--data-dir", data).stdout
    assert after == before
    assert json.loads(after)["customAllocationDefinition"]["webhookUrl"] == "https://alloc.example/"
