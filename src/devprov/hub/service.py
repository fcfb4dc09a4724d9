"""The built-in hubs' service: devices and twins for the REST API, and what connected devices do.

The REST API (server/hub_api.py) and the MQTT application (server/hub_mqtt.py) only translate
to these calls. A twin change made by the service is pushed at once to the device if it is
connected to this process; a device elsewhere reads it with its next twin GET, which every SDK
sends when it (re)connects.
"""

from __future__ import annotations

import base64
import time
from typing import Any

from devprov.domain import twin as twins
from devprov.domain.clock import now_timestamp
from devprov.domain.errors import DpsError, bad_request
from devprov.domain.hub_identities import (
    HubError,
    device_not_found,
    device_view,
    new_device,
    provisioned_view,
    twin_view,
    updated_device,
    validate_device_id,
)
from devprov.domain.models import LinkedHub
from devprov.domain.policies import AccessPolicy
from devprov.hub.auth import DeviceCredentials, authenticate_device, owner_policy
from devprov.hub.devices import HubDevices, etag_matches
from devprov.hub.ports import HubDirectory, MessageLog
from devprov.hub.presence import Presence

KIND = "builtin"
Document = dict[str, Any]
DEFAULT_METHOD_SECONDS = 30
MAX_METHOD_SECONDS = 300


def as_hub_error(error: DpsError) -> HubError:
    """A refusal in the hub's terms (a 400004 from the domain is IoT Hub's ArgumentInvalid)."""
    if isinstance(error, HubError):
        return error
    names = {400: "ArgumentInvalid", 401: "IotHubUnauthorizedAccess", 404: "DeviceNotFound"}
    names |= {409: "DeviceAlreadyExists", 412: "PreconditionFailed", 413: "MessageTooLarge"}
    return HubError(
        error.status, names.get(error.status, "ServerError"), error.error_code, error.message
    )


class HubService:
    """Everything the built-in hubs do, for any of them (each call names its hub)."""

    def __init__(
        self, directory: HubDirectory, devices: HubDevices, log: MessageLog, presence: Presence
    ) -> None:
        self.directory = directory
        self.devices = devices
        self.log = log
        self.presence = presence

    # Hubs -------------------------------------------------------------------------------------

    async def hubs(self) -> list[LinkedHub]:
        await self.directory.refresh()
        return [hub for hub in await self.directory.linked_hubs() if hub.connector == KIND]

    async def hub(self, host_name: str) -> LinkedHub:
        wanted = host_name.lower()
        for hub in await self.hubs():
            if hub.host_name.lower() == wanted:
                return hub
        raise HubError(404, "IotHubNotFound", 404002, f"There is no IoT hub {host_name!r} here.")

    async def policy(self, host_name: str) -> AccessPolicy:
        return owner_policy(await self.hub(host_name))

    # Devices (registry REST API) ------------------------------------------------------------

    async def put_device(
        self, hub: str, device_id: str, body: Any, if_match: str | None
    ) -> Document:
        """Create (no If-Match; 409 if it exists) or update (If-Match `*` or the etag)."""
        validate_device_id(device_id)
        if not isinstance(body, dict):
            raise bad_request("The device must be a JSON object.")
        if body.get("deviceId") not in (None, device_id):
            raise bad_request(f"deviceId {body.get('deviceId')!r} is not the path's {device_id!r}.")
        now = now_timestamp()

        def change(current: Document | None) -> Document:
            if current is None:
                return new_device(
                    device_id,
                    body.get("authentication"),
                    body.get("capabilities"),
                    now,
                    status=body.get("status") or "enabled",
                )
            if if_match is None:
                raise HubError(
                    409, "DeviceAlreadyExists", 409001, f"Device {device_id} already exists."
                )
            if not etag_matches(if_match, current["etag"]):
                raise HubError(412, "PreconditionFailed", 412001, "The etag does not match.")
            return updated_device(
                current,
                body.get("authentication"),
                body.get("capabilities"),
                now,
                status=body.get("status") or current["status"],
                status_reason=body.get("statusReason"),
            )

        device = await self.devices.change(hub, device_id, change)
        assert device is not None
        if device["status"] != "enabled":
            self.presence.disconnect(hub, device_id, "the device was disabled")
        return device_view(device, self._connected(hub, device_id))

    async def get_device(self, hub: str, device_id: str) -> Document:
        device = await self.devices.require(hub, device_id)
        return device_view(device, self._connected(hub, device_id))

    async def list_devices(self, hub: str, top: int | None) -> list[Document]:
        devices = await self.devices.list(hub, top)
        return [device_view(d, self._connected(hub, d["deviceId"])) for d in devices]

    async def delete_device(self, hub: str, device_id: str, if_match: str | None) -> None:
        await self.devices.delete(hub, device_id, if_match)
        self.presence.disconnect(hub, device_id, "the device was deleted")

    async def identities(self, hub: str) -> list[Document]:
        """The identities on a hub as DPS wrote them (devprov's /linkedHubs view)."""
        return [provisioned_view(device, hub) for device in await self.devices.list(hub)]

    async def identity(self, hub: str, device_id: str) -> Document:
        return provisioned_view(await self.devices.require(hub, device_id), hub)

    # Twins (service side) ---------------------------------------------------------------------

    async def get_twin(self, hub: str, device_id: str) -> Document:
        device = await self.devices.require(hub, device_id)
        return twin_view(device, self._connected(hub, device_id))

    async def patch_twin(
        self, hub: str, device_id: str, body: Any, if_match: str | None, *, replace: bool = False
    ) -> Document:
        """PATCH (merge) or PUT (replace) tags and desired properties; push the desired delta."""
        now = now_timestamp()
        delta: Document | None = None

        def change(current: Document | None) -> Document:
            nonlocal delta
            if current is None:
                raise device_not_found(device_id)
            if not etag_matches(if_match, twins.twin_etag(current["twin"])):
                raise HubError(412, "PreconditionFailed", 412001, "The twin's etag does not match.")
            write = twins.replace_twin if replace else twins.patch_twin
            twin, delta = write(current["twin"], body, now)
            return {**current, "twin": twin}

        device = await self.devices.change(hub, device_id, change)
        assert device is not None
        link = self.presence.link(hub, device_id)
        if delta is not None and link is not None:
            link.push_desired(delta)
        return twin_view(device, link is not None)

    async def invoke_method(self, hub: str, device_id: str, body: Any) -> Document:
        """POST /twins/{id}/methods: call the device, wait for its answer."""
        if not isinstance(body, dict) or not isinstance(body.get("methodName"), str):
            raise bad_request("A method invocation needs methodName (and payload).")
        seconds = body.get("responseTimeoutInSeconds") or DEFAULT_METHOD_SECONDS
        if not isinstance(seconds, int) or not 5 <= seconds <= MAX_METHOD_SECONDS:
            raise bad_request(f"responseTimeoutInSeconds must be 5 to {MAX_METHOD_SECONDS}.")
        await self.devices.require(hub, device_id)
        link = self.presence.link(hub, device_id)
        if link is None:
            raise HubError(404, "DeviceNotOnline", 404103, f"Device {device_id} is not online.")
        status, payload = await link.invoke(body["methodName"], body.get("payload"), seconds)
        return {"status": status, "payload": payload}

    # What devices do --------------------------------------------------------------------------

    async def connect(
        self, hub_name: str, device_id: str, credentials: DeviceCredentials
    ) -> tuple[LinkedHub, int | None]:
        """Check a device's CONNECT: the hub and the device exist, the device is enabled and its
        credentials are its own. Answers the hub and the token's expiry (None for X.509)."""
        hub = await self.hub(hub_name)
        device = await self.devices.get(hub.host_name, device_id)
        if device is None:
            raise HubError(401, "IotHubUnauthorizedAccess", 401002, f"No device {device_id!r}.")
        cas = await self.directory.known_cas()
        expiry = authenticate_device(hub.host_name, device, credentials, cas)
        return hub, expiry

    async def device_twin(self, hub: str, device_id: str) -> Document:
        return twins.device_document((await self.devices.require(hub, device_id))["twin"])

    async def report(self, hub: str, device_id: str, patch: Any) -> int:
        """Merge a reported-properties patch; answers the new reported `$version`."""
        now = now_timestamp()

        def change(current: Document | None) -> Document:
            if current is None:
                raise device_not_found(device_id)
            return {**current, "twin": twins.patch_reported(current["twin"], patch, now)}

        device = await self.devices.change(hub, device_id, change)
        assert device is not None
        version: int = device["twin"]["properties"]["reported"]["$version"]
        return version

    def telemetry(
        self,
        hub: str,
        device_id: str,
        properties: dict[str, str | None],
        system_properties: dict[str, str],
        body: bytes,
    ) -> None:
        """Keep a device-to-cloud message (written with others, shortly after)."""
        message: Document = {
            "deviceId": device_id,
            "enqueuedTimeUtc": now_timestamp(),
            "enqueuedAt": time.time(),
            "properties": properties,
            "systemProperties": system_properties,
        }
        try:  # the body as text when it is, else base64: the hub keeps it, never parses it
            message["body"], message["bodyEncoding"] = body.decode("utf-8"), "utf-8"
        except UnicodeDecodeError:
            message["body"], message["bodyEncoding"] = base64.b64encode(body).decode(), "base64"
        self.log.append(hub, device_id, message)

    def _connected(self, hub: str, device_id: str) -> bool:
        return self.presence.link(hub, device_id) is not None
