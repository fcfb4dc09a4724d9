"""The `azure-iothub` connector: device identities on an Azure IoT hub, over its registry REST API.

It writes what Azure's DPS writes (iothub-registry-rest.md §4): `PUT /devices/{id}` with the
credentials of the device's attestation (`sas` keys, or `selfSigned` thumbprints for X.509) and
`capabilities.iotEdge`; the initial twin with `PATCH /twins/{id}` (tags and desired properties);
`GET /twins/{id}` to carry a twin along on "reprovision and migrate"; `DELETE /devices/{id}` from
a hub the device left. Requests are signed with a service SAS token (sr = the hub's host name,
skn = the policy) from the hub's `iothubowner` (or any RegistryRead + RegistryWrite +
ServiceConnect) connection string, which may name a port (`HostName=hub.example:8443`) and a CA
file to trust besides the system's (`CaFile=/path/ca.pem`).
"""

from __future__ import annotations

import json
import logging
import secrets
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

from devprov.attestation.sas import build_sas
from devprov.domain.errors import DpsError, bad_request
from devprov.domain.hub_identities import dps_twin
from devprov.domain.keys import validate_key
from devprov.domain.models import LinkedHub
from devprov.hubs.connector import ConnectorError, DeviceIdentity, Finding
from devprov.hubs.web import Answer, WebClient, tls_context

log = logging.getLogger(__name__)
KIND = "azure-iothub"
API_VERSION = "2021-04-12"
TOKEN_SECONDS = 3600
UNDO_SECONDS = 5.0
_KNOWN_FIELDS = {"HostName", "SharedAccessKeyName", "SharedAccessKey", "CaFile"}


@dataclass(frozen=True)
class IotHubSettings:
    """What the connection string says: the hub's address, the policy and key, a CA file."""

    host: str
    key_name: str
    key: str
    ca_file: str | None = None

    @property
    def shown(self) -> str:
        """The connection string as errors and logs may show it: no key."""
        return f"HostName={self.host};SharedAccessKeyName={self.key_name}"


def parse(hub: LinkedHub) -> IotHubSettings:
    """The hub's connection string, checked (400004 naming the field and what to do)."""
    text = (hub.connection_string or "").strip()
    if not text:
        raise bad_request(
            "connectionString: an azure-iothub hub needs its iothubowner (or registryReadWrite)"
            " connection string: HostName=...;SharedAccessKeyName=...;SharedAccessKey=..."
        )
    fields: dict[str, str] = {}
    for part in text.split(";"):
        if not part.strip():
            continue
        name, sep, value = part.partition("=")
        if not sep or not name.strip():
            raise bad_request("connectionString: expected Name=value pairs separated by ';'.")
        fields[name.strip()] = value.strip()
    shown = ";".join(
        f"{name}={fields[name]}" for name in ("HostName", "SharedAccessKeyName") if name in fields
    )
    if "DeviceId" in fields:
        raise bad_request(
            f"connectionString: {shown} is a device's connection string; give the hub's"
            " iothubowner (or registryReadWrite) policy's."
        )
    unknown = sorted(set(fields) - _KNOWN_FIELDS)
    if unknown:
        raise bad_request(f"connectionString: unknown field(s) {unknown} ({shown}).")
    for name in ("HostName", "SharedAccessKeyName", "SharedAccessKey"):
        if not fields.get(name):
            raise bad_request(f"connectionString: {name} is missing ({shown}).")
    settings = IotHubSettings(
        fields["HostName"], fields["SharedAccessKeyName"], fields["SharedAccessKey"],
        fields.get("CaFile") or None,
    )  # fmt: skip
    try:
        validate_key(settings.key, "connectionString's SharedAccessKey")
    except DpsError:
        raise bad_request(
            f"connectionString: SharedAccessKey is not a base64 key ({settings.shown})."
        ) from None
    name = settings.host.rpartition(":")[0] if ":" in settings.host else settings.host
    if name.lower() != hub.host_name.lower():
        raise bad_request(
            f"connectionString: HostName {settings.host!r} is not the linked hub"
            f" {hub.host_name!r}; devices are told to connect to the hub's host name, so the"
            " two must be the same hub."
        )
    return settings


def prepare(hub: LinkedHub) -> LinkedHub:
    parse(hub)
    return hub


def build(hub: LinkedHub, timeout: float) -> AzureIotHubConnector:
    return AzureIotHubConnector(parse(hub), timeout)


class AzureIotHubConnector:
    """Puts DPS's device identities on one Azure IoT hub (or anything serving its REST API)."""

    def __init__(self, settings: IotHubSettings, timeout: float) -> None:
        self.settings = settings
        self.where = f"IoT hub {settings.host}"
        self.web = WebClient(self.where, timeout, None)

    async def start(self) -> None:
        # Built here, not at import: SSL_CERT_FILE is read when the context is made.
        self.web = WebClient(self.where, self.web.timeout, tls_context(self.settings.ca_file))
        await self.web.start()

    async def close(self) -> None:
        await self.web.close()

    async def upsert_device(self, hub: LinkedHub, identity: DeviceIdentity) -> None:
        """Create the identity (or, when one is there already, whatever its etag, update it
        with `If-Match: "*"`), then apply the initial twin when DPS applies one. An identity
        this call created is deleted again if its twin cannot be applied."""
        deadline = self.web.deadline()
        path = _device_path(identity.device_id)
        device = {
            "deviceId": identity.device_id,
            "status": "enabled",
            "authentication": identity.authentication,
            "capabilities": identity.capabilities,
        }
        answer = await self._call("PUT", path, deadline, device)
        created = answer.status == 200
        if answer.status == 409:  # DeviceAlreadyExists: take it over, as DPS does
            answer = await self._call("PUT", path, deadline, device, if_match="*")
        self._expect(answer, (200,), f"creating device {identity.device_id!r}")
        patch = _twin_patch(identity.initial_twin)
        if not patch:
            return
        try:
            answer = await self._call(
                "PATCH", _twin_path(identity.device_id), deadline, patch, if_match="*"
            )
            self._expect(answer, (200,), f"applying the initial twin of {identity.device_id!r}")
        except ConnectorError:
            if created:
                await self._undo(identity.device_id)
            raise

    async def read_twin(self, hub: LinkedHub, device_id: str) -> dict[str, Any] | None:
        answer = await self._call("GET", _twin_path(device_id), self.web.deadline())
        if answer.status == 404:
            return None
        self._expect(answer, (200,), f"reading the twin of {device_id!r}")
        twin = answer.json() or {}
        properties = twin.get("properties") or {}
        shape = {"tags": twin.get("tags") or {}, "properties": {
            "desired": properties.get("desired") or {}}}  # fmt: skip
        return dps_twin({"twin": shape})

    async def remove_device(self, hub: LinkedHub, device_id: str) -> None:
        answer = await self._call(
            "DELETE", _device_path(device_id), self.web.deadline(), if_match="*"
        )
        if answer.status != 404:
            self._expect(answer, (200, 204), f"deleting device {device_id!r}")

    async def check(self, hub: LinkedHub) -> list[Finding]:
        """Reads the registry (RegistryRead), then deletes and reads a device that is not there:
        IoT Hub checks rights before it looks, so a 404 proves RegistryWrite and
        ServiceConnect without touching any device."""
        probe = f"devprov-check-{secrets.token_hex(6)}"
        steps = [
            ("reach the hub and read its registry (RegistryRead)", "GET", "/devices", 200, None),
            ("write its registry (RegistryWrite)", "DELETE", _device_path(probe), 404, "*"),
            ("read and write twins (ServiceConnect)", "GET", _twin_path(probe), 404, None),
        ]
        findings: list[Finding] = []
        for what, method, path, expected, if_match in steps:
            query = "top=1" if path == "/devices" else ""
            try:
                answer = await self._call(
                    method, path, self.web.deadline(), if_match=if_match, query=query
                )
            except ConnectorError as error:
                findings.append(Finding(what, False, str(error)))
                break
            if answer.status == expected:
                findings.append(Finding(what, True, f"{self.where} ({self.settings.key_name})"))
                continue
            detail = self._describe(answer)
            if answer.status in (401, 403):
                detail += (
                    f": policy {self.settings.key_name!r} lacks this right or its key is wrong;"
                    " use iothubowner or a policy with RegistryRead, RegistryWrite and"
                    " ServiceConnect"
                )
            findings.append(Finding(what, False, detail))
            if answer.status in (401, 403) and not findings[:-1]:
                break  # nothing else can work with a refused key
        return findings

    async def _call(
        self,
        method: str,
        path: str,
        deadline: float,
        body: Any = None,
        *,
        if_match: str | None = None,
        query: str = "",
    ) -> Answer:
        url = f"https://{self.settings.host}{path}?api-version={API_VERSION}"
        url += f"&{query}" if query else ""
        raw = json.dumps(body).encode() if body is not None else b""

        def headers(_: bytes) -> dict[str, str]:
            values = {
                "Authorization": build_sas(
                    self.settings.host,
                    self.settings.key,
                    TOKEN_SECONDS,
                    key_name=self.settings.key_name,
                ),
                "Accept": "application/json",
            }
            if raw:
                values["Content-Type"] = "application/json; charset=utf-8"
            if if_match is not None:
                values["If-Match"] = f'"{if_match}"'
            return values

        return await self.web.request(method, url, deadline=deadline, headers=headers, body=raw)

    def _expect(self, answer: Answer, statuses: tuple[int, ...], doing: str) -> None:
        if answer.status not in statuses:
            raise ConnectorError(f"{doing}: {self._describe(answer)}")

    def _describe(self, answer: Answer) -> str:
        """The hub's answer in a line: status, IoT Hub's error code and message."""
        code = answer.headers.get("iothub-errorcode", "")
        body = answer.json()
        message = ""
        if isinstance(body, dict):
            message = str(body.get("Message") or body.get("message") or "")
            code = code or str(body.get("errorCode") or "")
        elif answer.body:
            message = answer.body[:200].decode(errors="replace")
        tried = f" after {answer.attempts} attempts" if answer.attempts > 1 else ""
        text = f"{self.where} answered {answer.status} {code}".rstrip()
        return f"{text}{tried}" + (f": {message[:300]}" if message else "")

    async def _undo(self, device_id: str) -> None:
        """Delete an identity this registration created and could not finish (the record
        will not name this hub); a hub that fails now too is logged."""
        try:
            deadline = self.web.deadline() - self.web.timeout + UNDO_SECONDS
            await self._call("DELETE", _device_path(device_id), deadline, if_match="*")
        except ConnectorError as error:
            log.warning("could not delete the unfinished device %r: %s", device_id, error)


def _device_path(device_id: str) -> str:
    return f"/devices/{quote(device_id, safe='')}"


def _twin_path(device_id: str) -> str:
    return f"/twins/{quote(device_id, safe='')}"


def _twin_patch(initial_twin: dict[str, Any] | None) -> dict[str, Any]:
    """An initial twin as a twin PATCH: its tags and desired properties, nothing else."""
    if not initial_twin:
        return {}
    patch: dict[str, Any] = {}
    if initial_twin.get("tags"):
        patch["tags"] = initial_twin["tags"]
    desired = (initial_twin.get("properties") or {}).get("desired")
    if desired:
        patch["properties"] = {"desired": desired}
    return patch
