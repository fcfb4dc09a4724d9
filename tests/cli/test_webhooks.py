"""`devprov webhook log|replay|serve`: recorded exchanges listed, replayed, a function served."""

from __future__ import annotations

import asyncio
import json
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from devprov.domain.exchanges import Exchange
from devprov.instance import load_instance
from devprov.store.database import Store
from devprov.store.exchanges import StoredExchanges
from tests.cli.test_commands import devprov
from tests.conftest import free_port

REQUEST = {
    "enrollmentGroup": {"enrollmentGroupId": "kettles", "attestation": {"type": "symmetricKey"}},
    "deviceRuntimeContext": {
        "registrationId": "kettle-1",
        "symmetricKey": {},
        "payload": {"modelId": "dtmi:contoso:kettle;1"},
    },
    "linkedHubs": ["spare.example", "kettles.example"],
}


def recorded(data_dir: Path) -> tuple[Exchange, Exchange]:
    """Two exchanges in the data dir's store: one that went well, one that failed."""
    instance = load_instance(data_dir)
    assert instance is not None
    good = Exchange(
        "kettle-1", "enrollmentGroup", "kettles", "http://old.example/a?code=***", REQUEST,
        answer={"iotHubHostName": "spare.example"}, status=200, duration_ms=12.5, at=1000.0,
    )  # fmt: skip
    bad = Exchange(
        "kettle-2", "enrollmentGroup", "kettles", "http://old.example/a?code=***", REQUEST,
        answer={"text": "boom"}, status=500, at=1001.0,
        error={"errorCode": 400207, "message": "Custom allocation failed with status code: 500"},
    )  # fmt: skip

    async def write() -> None:
        store = Store.connect(instance.database)
        try:
            log = StoredExchanges(store)
            await log.record(good)
            await log.record(bad)
        finally:
            await store.close()

    asyncio.run(write())
    return good, bad


@pytest.fixture
def data_dir(tmp_path: Path) -> Path:
    directory = tmp_path / "data"
    devprov("init", "--data-dir", str(directory))
    return directory


def test_log_lists_newest_first_and_filters(data_dir: Path) -> None:
    good, bad = recorded(data_dir)

    everything = json.loads(devprov("webhook", "log", "--data-dir", str(data_dir), "--json").stdout)
    failed = json.loads(
        devprov("webhook", "log", "--failed", "--data-dir", str(data_dir), "--json").stdout
    )
    by_group = devprov("webhook", "log", "--enrollment", "KETTLES", "--data-dir", str(data_dir))
    nobody = json.loads(
        devprov(
            "webhook", "log", "--enrollment", "toasters", "--data-dir", str(data_dir), "--json"
        ).stdout
    )

    assert [e["id"] for e in everything] == [bad.id, good.id]
    assert [e["id"] for e in failed] == [bad.id]
    assert "2 exchanges" in by_group.stdout and "400207" in by_group.stdout
    assert nobody == []


def test_replay_to_a_function_shows_both_answers(data_dir: Path) -> None:
    good, _ = recorded(data_dir)

    replayed = json.loads(
        devprov(
            "webhook", "replay", good.id, "--to", "tests.allocation.sample_allocators:by_model",
            "--data-dir", str(data_dir), "--json",
        ).stdout
    )  # fmt: skip
    table = devprov(
        "webhook", "replay", good.id, "--to", "tests.allocation.sample_allocators:by_model",
        "--data-dir", str(data_dir),
    )  # fmt: skip

    assert replayed["recorded"]["answer"] == {"iotHubHostName": "spare.example"}
    assert replayed["replayed"]["answer"]["iotHubHostName"] == "kettles.example"
    assert replayed["replayed"]["error"] is None
    assert "the answer differs" in table.stdout


def test_replay_of_an_unknown_exchange_says_where_to_look(data_dir: Path) -> None:
    result = devprov(
        "webhook", "replay", "nope", "--to", "http://127.0.0.1:9/", "--data-dir", str(data_dir),
        check=False,
    )  # fmt: skip
    assert result.returncode == 1
    assert "devprov webhook log" in result.stderr


@pytest.fixture
def served_function() -> Iterator[str]:
    """`devprov webhook serve` running by_model with a secret, as its own process."""
    port = free_port()
    server = subprocess.Popen(
        [
            sys.executable, "-m", "devprov.cli", "webhook", "serve",
            "tests.allocation.sample_allocators:by_model", "--port", str(port),
            "--secret", "shh",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            assert server.poll() is None, server.stderr.read() if server.stderr else ""
            try:
                with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                    break
            except OSError:
                time.sleep(0.1)
        yield f"http://127.0.0.1:{port}/api/allocate"
    finally:
        server.terminate()
        server.wait(timeout=10)


def test_a_served_function_speaks_the_webhook_contract(
    data_dir: Path, served_function: str
) -> None:
    _, bad = recorded(data_dir)

    def replay(*extra: str) -> dict[str, object]:
        output = devprov(
            "webhook", "replay", bad.id, "--to", served_function, "--data-dir", str(data_dir),
            "--json", *extra,
        ).stdout  # fmt: skip
        answer: dict[str, object] = json.loads(output)["replayed"]
        return answer

    unsigned = replay()
    signed = replay("--secret", "shh")

    assert unsigned["status"] == 401  # the server checks X-Devprov-Signature
    assert signed["status"] == 200
    assert signed["answer"] == {
        "iotHubHostName": "kettles.example",
        "initialTwin": {"tags": {"model": "dtmi:contoso:kettle;1"}},
        "payload": {"chosenBy": "by_model", "registrationId": "kettle-1"},
    }


def test_serve_refuses_an_allocator_it_cannot_load(tmp_path: Path) -> None:
    for flag, words in (
        ("nameless", "NAME=package.module:function"),
        ("x=no.such.module:f", "cannot import"),
    ):
        result = devprov(
            "serve", "--data-dir", str(tmp_path), "--allocator", flag, "--https-port", "1",
            check=False,
        )  # fmt: skip
        assert result.returncode == 1
        assert words in result.stderr
