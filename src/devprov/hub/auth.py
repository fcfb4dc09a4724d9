"""Who may use a built-in hub: devices by SAS token or certificate, services by the hub's policy.

Tokens are checked as IoT Hub checks them (iothub-device-mqtt.md §2.3): the HMAC is over `sr`
exactly as sent, the resource must be this hub's `{hub}/devices/{deviceId}`, and the key is the
device's primary or secondary key. Service clients sign `sr={hub}` with the hub's
`iothubowner` key, whose connection string is the linked hub's own (see connector.py).
"""

from __future__ import annotations

import base64
import secrets
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from cryptography import x509

from devprov.attestation.sas import check_expiry, parse_sas, signature_matches
from devprov.attestation.x509 import validate_chain
from devprov.domain.cas import KnownCa
from devprov.domain.certificates import common_name, sha1_thumbprint, sha256_thumbprint
from devprov.domain.errors import DpsError, bad_request
from devprov.domain.hub_identities import HubError
from devprov.domain.keys import decode_key
from devprov.domain.models import LinkedHub
from devprov.domain.policies import AccessPolicy

OWNER_POLICY = "iothubowner"
# The rights IoT Hub's iothubowner has (DOC-SAS): everything the REST API and devices need.
OWNER_RIGHTS = ["RegistryRead", "RegistryWrite", "ServiceConnect", "DeviceConnect"]


def unauthorized(message: str) -> HubError:
    return HubError(401, "IotHubUnauthorizedAccess", 401002, message)


def parse_connection_string(text: str, what: str = "connectionString") -> dict[str, str]:
    """`HostName=...;SharedAccessKeyName=...;SharedAccessKey=...` as a dict (400004 if not)."""
    fields: dict[str, str] = {}
    for part in text.split(";"):
        if not part.strip():
            continue
        name, sep, value = part.partition("=")
        if not sep or not name.strip():
            raise bad_request(f"{what}: expected Name=value pairs separated by ';'")
        fields[name.strip()] = value.strip()
    return fields


def new_connection_string(host_name: str) -> str:
    key = base64.b64encode(secrets.token_bytes(32)).decode()
    return f"HostName={host_name};SharedAccessKeyName={OWNER_POLICY};SharedAccessKey={key}"


def owner_policy(hub: LinkedHub) -> AccessPolicy:
    """The hub's service policy, from its connection string."""
    fields = parse_connection_string(hub.connection_string or "")
    key = fields.get("SharedAccessKey", "")
    return AccessPolicy(
        key_name=fields.get("SharedAccessKeyName", OWNER_POLICY),
        primary_key=key,
        secondary_key=key,
        rights=OWNER_RIGHTS,
    )


@dataclass(frozen=True)
class DeviceCredentials:
    """What a device sent at CONNECT: a SAS token (the MQTT password) or a certificate chain."""

    password: str | None
    certificates: Sequence[x509.Certificate]


def authenticate_device(
    hub: str,
    device: Mapping[str, Any],
    credentials: DeviceCredentials,
    cas: Mapping[str, KnownCa],
) -> int | None:
    """Check a device's credentials against its identity; the token's expiry (epoch seconds)
    when it used one. Refusals say why (the hub closes at that moment; IoT Hub does too)."""
    device_id = device["deviceId"]
    if device.get("status") != "enabled":
        raise unauthorized(f"Device {device_id} is disabled.")
    authentication = device["authentication"]
    kind = authentication["type"]
    if kind == "sas":
        return _sas(hub, device_id, authentication["symmetricKey"], credentials.password)
    if not credentials.certificates:
        raise unauthorized(
            f"Device {device_id} authenticates with an X.509 certificate; none came."
        )
    leaf = credentials.certificates[0]
    if kind == "selfSigned":
        prints = authentication["x509Thumbprint"]
        allowed = {
            (prints.get(slot) or "").upper()
            for slot in ("primaryThumbprint", "secondaryThumbprint")
        } - {""}
        if not allowed & {sha1_thumbprint(leaf), sha256_thumbprint(leaf)}:
            raise unauthorized(f"The certificate's thumbprint is not device {device_id}'s.")
        return None
    if kind == "certificateAuthority":
        _chained(device_id, credentials.certificates, cas)
        return None
    raise unauthorized(f"Device {device_id} has no credentials a device can connect with.")


def _sas(hub: str, device_id: str, keys: Mapping[str, Any], password: str | None) -> int:
    try:
        token = parse_sas(password)
    except DpsError:
        raise unauthorized("The password must be a SharedAccessSignature token.") from None
    resource = token.resource.rstrip("/")
    expected = f"{hub}/devices/{device_id}"
    if token.key_name or resource.lower() != expected.lower():
        raise unauthorized(f"The token is for {token.resource!r}, not for {expected!r}.")
    device_keys = [
        decode_key(key) for key in (keys.get("primaryKey"), keys.get("secondaryKey")) if key
    ]
    if not signature_matches(token, device_keys):
        raise unauthorized(f"The token is not signed with device {device_id}'s key.")
    try:
        check_expiry(token)
    except DpsError as error:
        raise unauthorized(error.message) from None
    return token.expiry


def _chained(device_id: str, chain: Sequence[x509.Certificate], cas: Mapping[str, KnownCa]) -> None:
    """certificateAuthority: the leaf's CN is the device id, its chain reaches a verified CA."""
    leaf = chain[0]
    if (common_name(leaf) or "") != device_id:
        raise unauthorized(f"The certificate's CN {common_name(leaf)!r} is not {device_id!r}.")
    for ca in cas.values():
        if not ca.verified:
            continue
        try:
            validate_chain(leaf, list(chain[1:]), ca.certificate)
        except DpsError:
            continue
        return
    raise unauthorized(f"The certificate of {device_id!r} does not chain to a verified CA.")
