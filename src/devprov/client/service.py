"""A client for devprov's service API (Azure-compatible), authenticated with a connection string."""

from __future__ import annotations

import ssl
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

import aiohttp

from devprov.attestation.sas import build_sas

API_VERSION = "2021-10-01"


class ServiceError(Exception):
    def __init__(self, status: int, body: Any) -> None:
        super().__init__(f"{status}: {body}")
        self.status = status
        self.body = body


def parse_connection_string(text: str) -> dict[str, str]:
    fields = dict(part.split("=", 1) for part in text.strip().split(";") if "=" in part)
    missing = {"HostName", "SharedAccessKeyName", "SharedAccessKey"} - fields.keys()
    if missing:
        raise ValueError(f"the connection string lacks {sorted(missing)}")
    return fields


@dataclass
class ServiceClient:
    connection_string: str
    ca_file: str | None = None

    def __post_init__(self) -> None:
        fields = parse_connection_string(self.connection_string)
        self.host = fields["HostName"]
        self.key_name = fields["SharedAccessKeyName"]
        self.key = fields["SharedAccessKey"]

    async def request(
        self,
        method: str,
        path: str,
        body: Any = None,
        headers: dict[str, str] | None = None,
    ) -> tuple[int, Any, dict[str, str]]:
        """One call; answers (status, parsed JSON body or None, response headers)."""
        all_headers = {
            "Authorization": build_sas(self.host, self.key, key_name=self.key_name),
            **(headers or {}),
        }
        url = f"https://{self.host}{path}?api-version={API_VERSION}"
        context = ssl.create_default_context(cafile=self.ca_file)
        async with (
            aiohttp.ClientSession(connector=aiohttp.TCPConnector(ssl=context)) as http,
            http.request(method, url, json=body, headers=all_headers) as response,
        ):
            raw = await response.read()
            parsed = await response.json(content_type=None) if raw else None
            return response.status, parsed, dict(response.headers)

    async def call(self, method: str, path: str, body: Any = None, **headers: str) -> Any:
        status, parsed, _ = await self.request(method, path, body, headers)
        if status >= 300:
            raise ServiceError(status, parsed)
        return parsed

    async def put_enrollment(self, enrollment: dict[str, Any]) -> Any:
        path = f"/enrollments/{quote(enrollment['registrationId'], safe='')}"
        return await self.call("PUT", path, enrollment)

    async def put_group(self, group: dict[str, Any]) -> Any:
        path = f"/enrollmentGroups/{quote(group['enrollmentGroupId'], safe='')}"
        return await self.call("PUT", path, group)

    async def get_registration(self, registration_id: str) -> Any:
        return await self.call("GET", f"/registrations/{quote(registration_id, safe='')}")

    async def link_hub(self, host_name: str, **settings: Any) -> Any:
        return await self.call("PUT", f"/linkedHubs/{quote(host_name, safe='')}", settings)
