#!/usr/bin/env python3
"""An example back end for devprov's `http` hub connector, on Python's standard library alone.

It checks every request's X-Devprov-Signature, then keeps device identities in a JSON file:
`upsert` stores one, `remove` deletes it (404 when it is not there), `check` answers 200. A real
back end would create the device in its broker or registry instead (EMQX, HiveMQ, ThingsBoard).

    DEVPROV_HUB_SECRET=... python3 http_hub_receiver.py --port 8099 --store devices.json
    devprov hub add things.example --connector http \\
        --connection-string 'Url=http://127.0.0.1:8099/devprov;Secret=...'

The secret comes from the environment, not the command line, so it does not show in `ps`. Put it
behind TLS (a reverse proxy, or Url=https://...) anywhere but loopback: the body carries keys.
"""

from __future__ import annotations

import argparse
import hashlib
import hmac
import json
import os
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

TOLERANCE_SECONDS = 300  # a signature older (or newer) than this is a replay or a bad clock
METHODS = {"upsert": "POST", "check": "POST", "remove": "DELETE"}


def verified(body: bytes, header: str | None, secret: str) -> bool:
    """X-Devprov-Signature: t=UNIX_SECONDS,v1=HEX with HEX = HMAC-SHA256(secret, f"{t}." + body)."""
    fields = [part.strip().partition("=") for part in (header or "").split(",")]
    stamps = [value for name, _, value in fields if name == "t" and value.isdigit()]
    candidates = [value for name, _, value in fields if name == "v1"]
    if not stamps or not candidates or abs(time.time() - int(stamps[0])) > TOLERANCE_SECONDS:
        return False
    message = stamps[0].encode() + b"." + body
    expected = hmac.new(secret.encode(), message, hashlib.sha256).hexdigest()
    return any(hmac.compare_digest(expected, candidate) for candidate in candidates)


class Registry:
    """Identities by hub and device id, in a JSON file written whole on every change."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.lock = threading.Lock()
        self.devices: dict[str, dict[str, Any]] = (
            json.loads(path.read_text()) if path.exists() else {}
        )

    def change(self, hub: str, device_id: str, identity: dict[str, Any] | None) -> bool:
        """Store or (identity None) delete; False when there was nothing to delete."""
        with self.lock:
            devices = self.devices.setdefault(hub, {})
            if identity is None:
                if devices.pop(device_id, None) is None:
                    return False
            else:
                devices[device_id] = identity
            temporary = self.path.with_suffix(".tmp")
            temporary.write_text(json.dumps(self.devices, indent=2))
            temporary.replace(self.path)
            return True


def handler(registry: Registry, secret: str) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            self.handle_signed()

        def do_DELETE(self) -> None:
            self.handle_signed()

        def handle_signed(self) -> None:
            body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
            if not verified(body, self.headers.get("X-Devprov-Signature"), secret):
                return self.answer(401, {"message": "bad or stale X-Devprov-Signature"})
            try:
                request = json.loads(body)
                action, hub = request["action"], request["hubHostName"]
            except (ValueError, KeyError, TypeError):
                return self.answer(400, {"message": "expected devprov's JSON request"})
            if METHODS.get(action) != self.command:
                return self.answer(400, {"message": f"{action!r} does not go with {self.command}"})
            if action == "check":
                return self.answer(200, {"ok": True})
            device_id = request["deviceId"]
            if action == "remove":
                found = registry.change(hub, device_id, None)
                return self.answer(204 if found else 404, None)
            registry.change(hub, device_id, request)  # create or update, initial twin included
            return self.answer(200, {"deviceId": device_id})

        def answer(self, status: int, body: Any) -> None:
            raw = json.dumps(body).encode() if body is not None else b""
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(raw)))
            self.end_headers()
            self.wfile.write(raw)

        def log_message(self, format: str, *args: Any) -> None:
            print(f"{self.command} {self.path} -> {args[1] if len(args) > 1 else ''}", flush=True)

    return Handler


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8099)
    parser.add_argument("--store", type=Path, default=Path("devices.json"))
    arguments = parser.parse_args()
    secret = os.environ.get("DEVPROV_HUB_SECRET", "")
    if len(secret) < 16:
        parser.error("set DEVPROV_HUB_SECRET (at least 16 characters) to the connection's Secret")
    server = ThreadingHTTPServer(
        (arguments.host, arguments.port), handler(Registry(arguments.store), secret)
    )
    print(f"listening on http://{arguments.host}:{arguments.port}", flush=True)
    server.serve_forever()


if __name__ == "__main__":
    main()
