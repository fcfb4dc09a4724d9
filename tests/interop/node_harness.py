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
