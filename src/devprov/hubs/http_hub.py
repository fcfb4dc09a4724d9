"""The `http` connector: device identities sent, signed, to any HTTP back end (EMQX, HiveMQ,
ThingsBoard, an in-house registry) that implements the small contract in docs/hubs.md.

The connection string is `Url=https://registry.example/devprov;Secret=...` (and optionally
`CaFile=/path/ca.pem`). Every request is JSON, signed with
`X-Devprov-Signature: t=UNIX_SECONDS,v1=HEX` (protocol/signature.py) and says what it is for in
`action`: `upsert` (POST: the identity and, when DPS applies one, the initial twin), `remove`
(DELETE: the device left this hub) and `check` (POST: `devprov hub check`, changes nothing).
A back end answers 2xx when done; 404 to a `remove` means it was not there. It cannot hand a twin
back, so "reprovision and migrate" away from an http hub carries an empty twin.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from devprov.domain.errors import bad_request
from devprov.domain.models import LinkedHub
from devprov.hubs.connector import ConnectorError, DeviceIdentity, Finding
from devprov.hubs.web import Answer, WebClient, tls_context
from devprov.protocol.signature import HEADER, signature_header

KIND = "http"
_KNOWN_FIELDS = {"Url", "Secret", "CaFile"}
EXAMPLE = "Url=https://registry.example/devprov;Secret=A_LONG_RANDOM_SECRET"


@dataclass(frozen=True)
class HttpSettings:
    url: str
    secret: str
    ca_file: str | None = None

    @property
    def where(self) -> str:
        """The back end as errors and logs may show it: scheme and host, no path or query."""
        parts = urlsplit(self.url)
        return f"HTTP back end {parts.scheme}://{parts.hostname}" + (
            f":{parts.port}" if parts.port else ""
        )


def parse(hub: LinkedHub) -> HttpSettings:
    """The hub's connection string, checked (400004 naming the field and what to do)."""
    text = (hub.connection_string or "").strip()
    if not text:
        raise bad_request(f"connectionString: an http hub needs {EXAMPLE}.")
    fields: dict[str, str] = {}
    for part in text.split(";"):
        if not part.strip():
            continue
        name, sep, value = part.partition("=")
        if not sep or not name.strip():
            raise bad_request(f"connectionString: expected Name=value pairs: {EXAMPLE}.")
        fields[name.strip()] = value.strip()
    unknown = sorted(set(fields) - _KNOWN_FIELDS)
    if unknown:
        raise bad_request(f"connectionString: unknown field(s) {unknown}; expected {EXAMPLE}.")
    url = fields.get("Url", "")
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 - raises on a bad port
    except ValueError:
        raise bad_request("connectionString: Url is not a URL.") from None
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise bad_request(f"connectionString: Url must be an http(s) URL: {EXAMPLE}.")
    if parts.username or parts.password:
        raise bad_request("connectionString: Url must not carry credentials; use Secret.")
    if len(fields.get("Secret", "")) < 16:
        raise bad_request(
            "connectionString: Secret (at least 16 characters) is missing; the back end checks"
            " X-Devprov-Signature with it."
        )
    return HttpSettings(url, fields["Secret"], fields.get("CaFile") or None)


def prepare(hub: LinkedHub) -> LinkedHub:
    parse(hub)
    return hub


def build(hub: LinkedHub, timeout: float) -> HttpHubConnector:
    return HttpHubConnector(parse(hub), timeout)


class HttpHubConnector:
    """Sends one HTTP back end the identities DPS assigns to one linked hub."""

    def __init__(self, settings: HttpSettings, timeout: float) -> None:
        self.settings = settings
        self.web = WebClient(settings.where, timeout, None)

    async def start(self) -> None:
        context = (
            tls_context(self.settings.ca_file) if self.settings.url.startswith("https:") else None
        )
        self.web = WebClient(self.settings.where, self.web.timeout, context)
        await self.web.start()

    async def close(self) -> None:
        await self.web.close()

    async def upsert_device(self, hub: LinkedHub, identity: DeviceIdentity) -> None:
        body = {
            "action": "upsert",
            "hubHostName": hub.host_name,
            "deviceId": identity.device_id,
            "registrationId": identity.registration_id,
            "authentication": identity.authentication,
            "capabilities": identity.capabilities,
            "initialTwin": identity.initial_twin,
        }
        answer = await self._send("POST", body)
        self._expect(answer, f"creating device {identity.device_id!r}")

    async def read_twin(self, hub: LinkedHub, device_id: str) -> dict[str, Any] | None:
        return None  # the contract has no read: see the module's docstring

    async def remove_device(self, hub: LinkedHub, device_id: str) -> None:
        body = {"action": "remove", "hubHostName": hub.host_name, "deviceId": device_id}
        answer = await self._send("DELETE", body)
        if answer.status != 404:
            self._expect(answer, f"removing device {device_id!r}")

    async def check(self, hub: LinkedHub) -> list[Finding]:
        what = "reach the back end and have a signed request accepted"
        try:
            answer = await self._send("POST", {"action": "check", "hubHostName": hub.host_name})
        except ConnectorError as error:
            return [Finding(what, False, str(error))]
        if 200 <= answer.status < 300:
            return [Finding(what, True, self.settings.where)]
        detail = self._describe(answer)
        if answer.status in (401, 403):
            detail += ": it refused the signature; is its secret the connection string's Secret?"
        return [Finding(what, False, detail)]

    async def _send(self, method: str, body: dict[str, Any]) -> Answer:
        raw = json.dumps(body, separators=(",", ":")).encode()

        def headers(signed: bytes) -> dict[str, str]:
            return {
                "Content-Type": "application/json",
                HEADER: signature_header(self.settings.secret, signed),
            }

        return await self.web.request(
            method, self.settings.url, deadline=self.web.deadline(), headers=headers, body=raw
        )

    def _expect(self, answer: Answer, doing: str) -> None:
        if not 200 <= answer.status < 300:
            raise ConnectorError(f"{doing}: {self._describe(answer)}")

    def _describe(self, answer: Answer) -> str:
        tried = f" after {answer.attempts} attempts" if answer.attempts > 1 else ""
        text = answer.body[:200].decode(errors="replace").strip()
        return f"{self.settings.where} answered {answer.status}{tried}" + (
            f": {text}" if text else ""
        )
