"""Runs the official Node SDKs through tests/interop/node/*.js, as black boxes."""

from __future__ import annotations

import asyncio
import json
import os
from pathlib import Path
from typing import Any

NODE_DIR = Path(__file__).parent / "node"
HARNESS_SECONDS = 90


async def run_node(script: str, request: dict[str, Any], ca: str) -> Any:
    """Run one harness script with devprov's CA trusted; answers the JSON line it prints."""
    if not (NODE_DIR / "node_modules").is_dir():
        raise RuntimeError("tests/interop/node/node_modules is missing: run `make test`")
    process = await asyncio.create_subprocess_exec(
        "node",
        str(NODE_DIR / script),
        json.dumps(request),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env={**os.environ, "NODE_EXTRA_CA_CERTS": ca},
    )
    async with asyncio.timeout(HARNESS_SECONDS):
        stdout, stderr = await process.communicate()
    lines = stdout.decode().strip().splitlines()
    if process.returncode != 0 or not lines:
        raise RuntimeError(f"{script} failed ({process.returncode}): {stderr.decode()}")
    return json.loads(lines[-1])


class NodeProcess:
    """A harness script that reports events as JSON lines while the test acts in between."""

    def __init__(self, process: asyncio.subprocess.Process) -> None:
        self.process = process
        self.events: list[dict[str, Any]] = []

    @classmethod
    async def start(cls, script: str, request: dict[str, Any], ca: str) -> NodeProcess:
        process = await asyncio.create_subprocess_exec(
            "node",
            str(NODE_DIR / script),
            json.dumps(request),
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
            env={**os.environ, "NODE_EXTRA_CA_CERTS": ca},
        )
        return cls(process)

    async def until(self, event: str, **matching: Any) -> dict[str, Any]:
        """The next event of this kind (whose fields match), reading on as needed."""
        async with asyncio.timeout(HARNESS_SECONDS):
            for earlier in self.events:
                if _matches(earlier, event, matching):
                    self.events.remove(earlier)
                    return earlier
            assert self.process.stdout is not None
            while line := await self.process.stdout.readline():
                seen: dict[str, Any] = json.loads(line)
                if seen["event"] == "error":
                    raise AssertionError(f"the Node device failed: {seen['error']}")
                if _matches(seen, event, matching):
                    return seen
                self.events.append(seen)
        stderr = await self.process.stderr.read() if self.process.stderr else b""
        raise AssertionError(f"the Node device ended without {event}: {stderr.decode()}")

    async def close(self) -> None:
        if self.process.returncode is None:
            self.process.kill()
        await self.process.wait()


def _matches(seen: dict[str, Any], event: str, matching: dict[str, Any]) -> bool:
    return seen["event"] == event and all(seen.get(k) == v for k, v in matching.items())
