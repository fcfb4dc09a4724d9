"""Real services the connector tests drive as processes: start, stop, freeze, start again.

A stopped service refuses connections; a frozen one (SIGSTOP) accepts them in the kernel and
never answers, as a hung hub does.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
CLOUD_HUB = "cloud.devprov.test"  # tests/interop/hosts: 127.0.0.2, so it may own 443 and 8883
CLOUD_ADDRESS = "127.0.0.2"


@dataclass
class Service:
    """One process, ready when `ready` (host, port) accepts a connection."""

    name: str
    argv: list[str]
    ready: tuple[str, int]
    cwd: Path
    env: dict[str, str] = field(default_factory=dict)
    process: subprocess.Popen[bytes] | None = None

    def start(self, seconds: float = 60.0) -> None:
        """Start and wait until it listens (blocking: call it through asyncio.to_thread from
        a test's event loop)."""
        with open(self.cwd / f"{self.name}.log", "ab") as log:
            self.process = subprocess.Popen(
                self.argv, cwd=self.cwd, stdout=log, stderr=subprocess.STDOUT,
                env={**os.environ, **self.env},
            )  # fmt: skip
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                pytest.fail(f"{self.name} exited {self.process.returncode}:\n{self.output()}")
            if _accepts(*self.ready):
                return
            time.sleep(0.1)
        pytest.fail(f"{self.name} did not listen on {self.ready} within {seconds} s")

    def stop(self) -> None:
        process, self.process = self.process, None
        if process is None or process.poll() is not None:
            return
        process.send_signal(signal.SIGCONT)  # a frozen process must run to end
        process.terminate()
        try:
            process.wait(20)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()

    def freeze(self) -> None:
        assert self.process is not None
        self.process.send_signal(signal.SIGSTOP)

    def thaw(self) -> None:
        assert self.process is not None
        self.process.send_signal(signal.SIGCONT)

    def output(self) -> str:
        path = self.cwd / f"{self.name}.log"
        return path.read_text(errors="replace")[-4000:] if path.exists() else ""


def _accepts(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=0.5):
            return True
    except OSError:
        return False


def devprov_cli(*arguments: str) -> str:
    done = subprocess.run(
        [sys.executable, "-m", "devprov.cli", *arguments],
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    return done.stdout


def cloud_devprov(data_dir: Path) -> Service:
    """A second devprov, serving a built-in hub named CLOUD_HUB on 127.0.0.2's 443 and 8883: an
    IoT hub with Azure's REST API, which the official SDKs validate (tests/interop)."""
    data_dir.mkdir(parents=True, exist_ok=True)
    argv = [
        sys.executable, "-m", "devprov.cli", "serve", "--data-dir", str(data_dir),
        "--host", CLOUD_ADDRESS, "--https-port", "443", "--mqtt-port", "8883",
        "--default-hub", CLOUD_HUB,
    ]  # fmt: skip
    return Service("cloud-devprov", argv, (CLOUD_ADDRESS, 443), data_dir)


def cloud_connection_string(data_dir: Path) -> str:
    """The cloud hub's iothubowner connection string, as its operator reads it."""
    shown = json.loads(devprov_cli("hub", "show", CLOUD_HUB, "--json", "--data-dir", str(data_dir)))
    text: str = shown["connectionString"]
    return text
