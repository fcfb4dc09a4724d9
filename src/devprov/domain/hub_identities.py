"""Device identities as IoT Hub's registry keeps them: creating, updating and showing them.

A built-in hub keeps one document per device: the Device JSON of IoT Hub's registry REST API
(iothub-registry-rest.md §2.1) plus the device's twin (domain/twin.py) and, for a device DPS
provisioned, its registration id. Everything here is pure; the store keeps the documents.
"""

from __future__ import annotations

import base64
import re
import secrets
import uuid
from typing import Any

from devprov.domain import twin as twins
from devprov.domain.errors import DpsError, bad_request
from devprov.domain.keys import generate_key, validate_key

Document = dict[str, Any]
AUTHENTICATION_TYPES = ("sas", "selfSigned", "certificateAuthority", "none")
STATUSES = ("enabled", "disabled")
# DOC-REG: device ids are case-sensitive, at most 128 of ASCII alphanumerics and - . + % _ # * ? !
# ( ) , = @ $ '. '+' and '#' cannot travel in MQTT topics, so devprov's hub refuses them (the
# newer identity-registry docs drop them too) and takes ':' as its registration ids may hold it.
_DEVICE_ID = re.compile(r"[A-Za-z0-9\-.%_*?!(),:=@$']{1,128}")
_THUMBPRINT = re.compile(r"(?:[0-9A-Fa-f]{40}|[0-9A-Fa-f]{64})")
_NEVER = "0001-01-01T00:00:00Z"


class HubError(DpsError):
    """A refusal of the hub's REST API: IoT Hub names its error codes (`DeviceNotFound`)."""

    def __init__(self, status: int, name: str, error_code: int, message: str) -> None:
        super().__init__(status, error_code, message)
        self.name = name


def device_not_found(device_id: str) -> HubError:
    return HubError(404, "DeviceNotFound", 404001, f"Device {device_id} not found.")


def validate_device_id(device_id: str) -> str:
    if not isinstance(device_id, str) or not _DEVICE_ID.fullmatch(device_id):
        raise HubError(
            400,
            "ArgumentInvalid",
            400004,
            f"The device id {device_id!r} is not valid: use 1 to 128 of A-Z a-z 0-9"
            " - . % _ * ? ! ( ) , : = @ $ '.",
        )
    return device_id


def new_device(
    device_id: str,
    authentication: Any,
    capabilities: Any,
    now: str,
    *,
    status: Any = "enabled",
    initial_twin: Any = None,
    registration_id: str | None = None,
) -> Document:
    """A device identity and its twin, as a create (REST or DPS) makes it."""
    validate_device_id(device_id)
    device: Document = {
        "deviceId": device_id,
        "generationId": str(uuid.uuid4().int)[:18],
        "status": _status(status),
        "statusReason": None,
        "statusUpdatedTime": _NEVER,
        "authentication": checked_authentication(authentication),
        "capabilities": _capabilities(capabilities),
        "cloudToDeviceMessageCount": 0,
        "twin": twins.new_twin(initial_twin, now),
    }
    if registration_id is not None:
        device["registrationId"] = registration_id
    return with_new_etag(device)


def updated_device(
    device: Document,
    authentication: Any,
    capabilities: Any,
    now: str,
    *,
    status: Any = None,
    status_reason: Any = None,
) -> Document:
    """The identity with new credentials, capabilities and (if given) status; twin untouched."""
    result = {
        **device,
        "authentication": checked_authentication(authentication, device.get("authentication")),
        "capabilities": _capabilities(capabilities),
    }
    if status is not None and _status(status) != device.get("status"):
        result["status"] = _status(status)
        result["statusUpdatedTime"] = now
    if status_reason is not None:
        result["statusReason"] = str(status_reason)[:128]
    return with_new_etag(result)


def with_new_etag(device: Document) -> Document:
    return {**device, "etag": base64.b64encode(secrets.token_bytes(6)).decode()}


def checked_authentication(value: Any, previous: Any = None) -> Document:
    """An AuthenticationMechanism IoT Hub accepts; SAS keys left empty are generated (the Node
    registry sends `""` for keys it wants the hub to make), or kept from `previous`."""
    if value is None:
        value = {"type": "sas"}
    if not isinstance(value, dict):
        raise bad_request("authentication: must be a JSON object")
    kind = value.get("type", "sas")
    if kind not in AUTHENTICATION_TYPES:
        raise bad_request(f"authentication.type: must be one of {', '.join(AUTHENTICATION_TYPES)}")
    if kind == "sas":
        keys = value.get("symmetricKey") or {}
        old = (previous.get("symmetricKey") or {}) if isinstance(previous, dict) else {}
        primary = _key(keys.get("primaryKey"), old.get("primaryKey"), "primary")
        secondary = _key(keys.get("secondaryKey"), old.get("secondaryKey"), "secondary")
        return {
            "type": "sas",
            "symmetricKey": {"primaryKey": primary, "secondaryKey": secondary},
            "x509Thumbprint": {"primaryThumbprint": None, "secondaryThumbprint": None},
        }
    if kind == "selfSigned":
        prints = value.get("x509Thumbprint") or {}
        first = _thumbprint(prints.get("primaryThumbprint"), "primaryThumbprint")
        second = _thumbprint(prints.get("secondaryThumbprint"), "secondaryThumbprint")
        if first is None:
            raise bad_request("authentication.x509Thumbprint.primaryThumbprint: required")
        return {
            "type": "selfSigned",
            "symmetricKey": {"primaryKey": None, "secondaryKey": None},
            "x509Thumbprint": {"primaryThumbprint": first, "secondaryThumbprint": second},
        }
    return {
        "type": kind,
        "symmetricKey": {"primaryKey": None, "secondaryKey": None},
        "x509Thumbprint": {"primaryThumbprint": None, "secondaryThumbprint": None},
    }


def device_view(device: Document, connected: bool = False) -> Document:
    """The Device JSON the registry REST API answers (the twin is read at /twins)."""
    view = {key: value for key, value in device.items() if key not in ("twin", "registrationId")}
    view["connectionState"] = "Connected" if connected else "Disconnected"
    view.setdefault("connectionStateUpdatedTime", _NEVER)
    view.setdefault("lastActivityTime", _NEVER)
    return view


def twin_view(device: Document, connected: bool = False) -> Document:
    """The Twin JSON of /twins/{id}: the twin with the identity fields IoT Hub shows beside it."""
    authentication = device["authentication"]
    return twins.service_document(
        device["twin"],
        device["deviceId"],
        {
            "deviceEtag": device["etag"],
            "status": device["status"],
            "statusReason": device.get("statusReason"),
            "statusUpdateTime": device.get("statusUpdatedTime", _NEVER),
            "connectionState": "Connected" if connected else "Disconnected",
            "lastActivityTime": _NEVER,
            "cloudToDeviceMessageCount": device.get("cloudToDeviceMessageCount", 0),
            "authenticationType": authentication["type"],
            "x509Thumbprint": authentication["x509Thumbprint"],
            "capabilities": device["capabilities"],
            "modelId": "",
        },
    )


def dps_twin(device: Document) -> Document:
    """The twin in the shape DPS carries along on "reprovision and migrate" (an initialTwin):
    the tags and desired properties it has, without versions or metadata."""
    twin = device["twin"]
    desired = {
        key: value
        for key, value in twin["properties"]["desired"].items()
        if key not in ("$metadata", "$version")
    }
    result: Document = {}
    if twin["tags"]:
        result["tags"] = twin["tags"]
    if desired:
        result["properties"] = {"desired": desired}
    return result


def provisioned_view(device: Document, hub: str) -> Document:
    """The identity as DPS wrote it (devprov's `/linkedHubs/{hub}/devices` view): credentials
    of its type only, and the twin in DPS's initialTwin shape."""
    authentication = dict(device["authentication"])
    if authentication["type"] == "sas":
        authentication.pop("x509Thumbprint", None)
    else:
        authentication.pop("symmetricKey", None)
        if authentication["type"] != "selfSigned":
            authentication.pop("x509Thumbprint", None)
    return {
        "deviceId": device["deviceId"],
        "hubHostName": hub,
        "registrationId": device.get("registrationId"),
        "status": device["status"],
        "authentication": authentication,
        "capabilities": device["capabilities"],
        "twin": dps_twin(device),
    }


def _status(value: Any) -> str:
    if value not in STATUSES:
        raise bad_request(f"status: must be one of {', '.join(STATUSES)}")
    return str(value)


def _capabilities(value: Any) -> Document:
    if value is None:
        return {"iotEdge": False}
    if not isinstance(value, dict) or not isinstance(value.get("iotEdge", False), bool):
        raise bad_request('capabilities: must be {"iotEdge": true|false}')
    return {"iotEdge": bool(value.get("iotEdge", False))}


def _key(value: Any, previous: Any, which: str) -> str:
    if value in (None, ""):
        return str(previous) if previous else generate_key()
    if not isinstance(value, str):
        raise bad_request(f"authentication.symmetricKey.{which}Key: must be base64 text")
    return validate_key(value, f"authentication.symmetricKey.{which}Key")


def _thumbprint(value: Any, name: str) -> str | None:
    if value in (None, ""):
        return None
    if not isinstance(value, str) or not _THUMBPRINT.fullmatch(value):
        raise bad_request(
            f"authentication.x509Thumbprint.{name}: 40 (SHA-1) or 64 (SHA-256) hex digits"
        )
    return value.upper()
