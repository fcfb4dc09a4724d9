"""The `mosquitto` connector: per-device clients and roles in Mosquitto 2's dynamic security.

The connection string is the broker's URL with an admin user's credentials,
`mqtt://USER:PASSWORD@HOST:PORT` or `mqtts://...?ca=/path/ca.pem`, and optionally the topic
templates (`topic=`, repeatable, default `devices/{deviceId}/#`; `twin=`, default
`devices/{deviceId}/twin/desired`). Over `$CONTROL/dynamic-security/v1` it gives each device:

- a client whose user name and client id are the device id and whose password is the device's
  primary symmetric key as the device holds it (base64 text: an individual enrollment's key, a
  group's derived key, the key a TPM device was given); X.509 devices get no password: the
  broker's listener authenticates them by certificate (`use_identity_as_username`, CN = id);
- a role `devprov-device-{deviceId}` allowing publish and subscribe under its topics only. The
  ACLs hold literal topics: Mosquitto 2.0.11 does not expand %u/%c in dynsec ACLs;
- the initial twin's desired properties, published retained at the twin topic.

A device that leaves loses its client (the broker disconnects it), its role and its twin.
Mosquitto's admin role may not publish to application topics, so at its first start the
connector gives its own user a role `devprov-connector` allowing it to publish twins.

One module on purpose (about 500 lines): the dynamic security commands, the one admin
connection they travel on and the connector's lifecycle are one conversation with one broker.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import secrets
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

from devprov.domain.errors import bad_request
from devprov.domain.json_text import JsonRefused, parse_json
from devprov.domain.models import LinkedHub
from devprov.hubs.connector import ConnectorError, DeviceIdentity, Finding
from devprov.hubs.mqtt_client import MqttClient
from devprov.hubs.web import tls_context
from devprov.protocol import mqtt

log = logging.getLogger(__name__)
KIND = "mosquitto"
REQUEST_TOPIC = "$CONTROL/dynamic-security/v1"
RESPONSE_TOPIC = "$CONTROL/dynamic-security/v1/response"
DEFAULT_TOPIC = "devices/{deviceId}/#"
DEFAULT_TWIN_TOPIC = "devices/{deviceId}/twin/desired"
PUBLISHER_ROLE = "devprov-connector"
ROLE_PREFIX = "devprov-device-"
UNDO_SECONDS = 5.0
_PLACEHOLDER = "{deviceId}"


@dataclass(frozen=True)
class MosquittoSettings:
    """What the connection string says."""

    tls: bool
    host: str
    port: int
    username: str
    password: str
    ca_file: str | None = None
    topics: tuple[str, ...] = (DEFAULT_TOPIC,)
    twin_topic: str = DEFAULT_TWIN_TOPIC

    @property
    def shown(self) -> str:
        """The URL as errors and logs may show it: no password."""
        return f"{'mqtts' if self.tls else 'mqtt'}://{self.username}@{self.host}:{self.port}"


def parse(hub: LinkedHub) -> MosquittoSettings:
    """The hub's connection string, checked (400004 naming the field and what to do)."""
    text = (hub.connection_string or "").strip()
    example = "mqtt://USER:PASSWORD@HOST:PORT (or mqtts://...?ca=/path/ca.pem)"
    if not text:
        raise bad_request(f"connectionString: a mosquitto hub needs its broker's URL: {example}.")
    try:
        url = urlsplit(text)
        port = url.port
    except ValueError:
        raise bad_request(f"connectionString: not a URL; expected {example}.") from None
    if url.scheme not in ("mqtt", "mqtts"):
        raise bad_request(f"connectionString: the scheme must be mqtt or mqtts: {example}.")
    if not url.hostname:
        raise bad_request(f"connectionString: the broker's host is missing: {example}.")
    shown = f"{url.scheme}://{url.username or ''}@{url.hostname}"
    if not url.username or url.password is None:
        raise bad_request(
            f"connectionString: the admin user and password are missing ({shown}): {example}."
        )
    query = parse_qs(url.query, keep_blank_values=True)
    unknown = sorted(set(query) - {"ca", "topic", "twin"})
    if unknown:
        raise bad_request(f"connectionString: unknown parameter(s) {unknown} ({shown}).")
    if "ca" in query and url.scheme != "mqtts":
        raise bad_request(f"connectionString: ?ca= is for mqtts:// only ({shown}).")
    topics = tuple(query.get("topic") or [DEFAULT_TOPIC])
    twin = (query.get("twin") or [DEFAULT_TWIN_TOPIC])[-1]
    for template in (*topics, twin):
        _check_template(template, shown, wildcards=template is not twin)
    return MosquittoSettings(
        tls=url.scheme == "mqtts",
        host=url.hostname,
        port=port or (8883 if url.scheme == "mqtts" else 1883),
        username=unquote(url.username),
        password=unquote(url.password),
        ca_file=(query.get("ca") or [""])[-1] or None,
        topics=topics,
        twin_topic=twin,
    )


def _check_template(template: str, shown: str, *, wildcards: bool) -> None:
    levels = template.split("/")
    if _PLACEHOLDER not in levels:
        raise bad_request(
            f"connectionString: topic template {template!r} must have {_PLACEHOLDER} as a whole"
            f" level, e.g. {DEFAULT_TOPIC} ({shown})."
        )
    bad = any(
        ("+" in level and level != "+") or ("#" in level and level != "#") for level in levels
    )
    if bad or "#" in levels[:-1] or (not wildcards and ("+" in levels or "#" in levels)):
        raise bad_request(
            f"connectionString: {template!r} is not a valid topic"
            f"{' filter' if wildcards else ' (no wildcards)'} ({shown})."
        )


def prepare(hub: LinkedHub) -> LinkedHub:
    parse(hub)
    return hub


def build(hub: LinkedHub, timeout: float) -> MosquittoConnector:
    return MosquittoConnector(parse(hub), timeout)


def _error(response: dict[str, Any]) -> str | None:
    error = response.get("error")
    return str(error) if error else None


class MosquittoConnector:
    """Manages one Mosquitto broker's device clients over one admin MQTT connection."""

    def __init__(self, settings: MosquittoSettings, timeout: float) -> None:
        self.settings = settings
        self.timeout = timeout
        self.where = f"Mosquitto {settings.host}:{settings.port}"
        self._tag = f"devprov-{secrets.token_hex(4)}"
        self._client: MqttClient | None = None
        self._lock = asyncio.Lock()
        self._requests = 0
        self._waiting: dict[str, asyncio.Future[list[dict[str, Any]]]] = {}
        self._watchers: dict[str, list[list[bytes]]] = {}

    # Lifecycle -------------------------------------------------------------------------------

    async def start(self) -> None:
        async with self._budget():
            await self._ensure_publisher_role()

    async def close(self) -> None:
        client, self._client = self._client, None
        if client is not None:
            await client.close()

    # What DPS asks -------------------------------------------------------------------------

    async def upsert_device(self, hub: LinkedHub, identity: DeviceIdentity) -> None:
        """Create (or update) the device's role and client, then publish its desired
        properties retained when DPS applies an initial twin. What this call created is
        deleted again if a later step fails."""
        device_id = identity.device_id
        _check_device_id(device_id)
        fields: dict[str, Any] = {
            "username": device_id,
            "clientid": device_id,
            "roles": [{"rolename": ROLE_PREFIX + device_id, "priority": 0}],
            "textname": f"registration {identity.registration_id}"[:128],
        }
        password = _password(identity)
        if password is not None:
            fields["password"] = password
        role: dict[str, Any] = {"rolename": ROLE_PREFIX + device_id, "acls": self._acls(device_id)}
        created_role = created_client = False
        try:
            async with self._budget():
                answers = await self._dynsec(
                    [{"command": "createRole", **role}, {"command": "createClient", **fields}]
                )
                created_role, created_client = (_error(answer) is None for answer in answers)
                again = []
                if _error(answers[0]) == "Role already exists":
                    again.append({"command": "modifyRole", **role})
                if _error(answers[1]) == "Client already exists":
                    again.append({"command": "modifyClient", **fields})
                self._raise_errors(answers, ignore={"Role already exists", "Client already exists"})
                if again:
                    self._raise_errors(await self._dynsec(again))
                if identity.initial_twin is not None:
                    desired = (identity.initial_twin.get("properties") or {}).get("desired") or {}
                    client = await self._connected()
                    await client.publish(self._twin_topic(device_id), json.dumps(desired).encode(),
                                         qos=1, retain=True)  # fmt: skip
        except ConnectorError:
            await self._undo(device_id, created_client, created_role)
            raise

    async def read_twin(self, hub: LinkedHub, device_id: str) -> dict[str, Any] | None:
        """The retained desired properties (Mosquitto keeps no tags); None without a client."""
        _check_device_id(device_id)
        async with self._budget():
            answer = (await self._dynsec([{"command": "getClient", "username": device_id}]))[0]
            if _error(answer) == "Client not found":
                return None
            self._raise_errors([answer])
            payload = await self._retained(self._twin_topic(device_id))
        try:
            desired = parse_json(payload) if payload else {}
        except JsonRefused:
            desired = {}
        return {"properties": {"desired": desired}} if isinstance(desired, dict) and desired else {}

    async def remove_device(self, hub: LinkedHub, device_id: str) -> None:
        """Delete the client (Mosquitto disconnects the device), its role and its twin."""
        _check_device_id(device_id)
        async with self._budget():
            await self._remove(device_id)

    async def check(self, hub: LinkedHub) -> list[Finding]:
        findings: list[Finding] = []
        steps = [
            (f"connect as {self.settings.username!r}", self._connected),
            ("manage clients and roles ($CONTROL/dynamic-security/v1)", self._can_manage),
            (f"publish retained twins ({self._twin_filter()})", self._can_publish_twins),
        ]
        for what, step in steps:
            try:
                async with self._budget():
                    await step()
            except ConnectorError as error:
                findings.append(Finding(what, False, str(error)))
                break
            findings.append(Finding(what, True, self.settings.shown))
        return findings

    # Dynamic security ------------------------------------------------------------------------

    async def _dynsec(self, commands: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """Send commands in one message; their responses, in order."""
        client = await self._connected()
        self._requests += 1
        key = f"{self._tag}:{self._requests}"
        for number, command in enumerate(commands):
            command["correlationData"] = f"{key}:{number}"
        future: asyncio.Future[list[dict[str, Any]]] = asyncio.get_running_loop().create_future()
        self._waiting[key] = future
        try:
            await client.publish(REQUEST_TOPIC, json.dumps({"commands": commands}).encode())
            return await future
        finally:
            self._waiting.pop(key, None)
            if not future.done():
                future.cancel()
            elif not future.cancelled():
                future.exception()  # retrieved: the publish's own failure is what is raised

    def _raise_errors(self, answers: list[dict[str, Any]], ignore: set[str] | None = None) -> None:
        for answer in answers:
            error = _error(answer)
            if error is not None and error not in (ignore or set()):
                raise ConnectorError(f"{self.where} refused {answer.get('command')}: {error}")

    async def _ensure_publisher_role(self) -> None:
        """Let the connector's own user publish twins: Mosquitto's admin role may not publish
        to application topics. Adding a role to a user makes Mosquitto disconnect its
        sessions, so it is done only when missing, once, and the connection made again."""
        acls = [{"acltype": "publishClientSend", "topic": self._twin_filter(), "allow": True}]
        answers = await self._dynsec(
            [
                {"command": "createRole", "rolename": PUBLISHER_ROLE, "acls": acls},
                {"command": "getClient", "username": self.settings.username},
                {"command": "getRole", "rolename": PUBLISHER_ROLE},
            ]
        )
        self._raise_errors(answers, ignore={"Role already exists", "Client not found"})
        have = answers[2].get("data", {}).get("role", {}).get("acls", [])
        if not any(acl.get("topic") == self._twin_filter() for acl in have):
            self._raise_errors(
                await self._dynsec(
                    [
                        {
                            "command": "addRoleACL",
                            "rolename": PUBLISHER_ROLE,
                            "priority": 0,
                            **acls[0],
                        }
                    ]
                ),
                ignore={"ACL with this topic already exists"},
            )
        roles = answers[1].get("data", {}).get("client", {}).get("roles", [])
        if _error(answers[1]) or any(r.get("rolename") == PUBLISHER_ROLE for r in roles):
            return  # a user from a password file is not dynsec's to change
        add = {"command": "addClientRole", "username": self.settings.username,
               "rolename": PUBLISHER_ROLE, "priority": -1}  # fmt: skip
        with contextlib.suppress(ConnectorError, TimeoutError):
            async with asyncio.timeout(2.0):  # it answers, or drops us first
                self._raise_errors(await self._dynsec([add]))
        log.info("gave %s the role %s to publish twins", self.settings.shown, PUBLISHER_ROLE)
        await self.close()

    async def _can_manage(self) -> None:
        self._raise_errors(await self._dynsec([{"command": "listRoles", "count": 1}]))

    async def _can_publish_twins(self) -> None:
        """Publish a retained twin for a device that does not exist and see it come back."""
        topic = self._twin_topic(f"devprov-check-{secrets.token_hex(4)}")
        client = await self._connected()
        seen: list[bytes] = []
        self._watchers.setdefault(topic, []).append(seen)
        try:
            if (await client.subscribe(topic))[0] == mqtt.SUBSCRIBE_FAILURE:
                raise ConnectorError(f"{self.settings.username!r} may not subscribe to {topic}")
            await client.publish(topic, b"{}", retain=True)
            await client.ping()
            await client.publish(topic, b"", retain=True)
            await client.unsubscribe(topic)
        finally:
            self._unwatch(topic, seen)
        if not seen:
            raise ConnectorError(
                f"{self.where} dropped the connector's publish to {topic}: give"
                f" {self.settings.username!r} a role with publishClientSend {self._twin_filter()}"
            )

    async def _retained(self, topic: str) -> bytes | None:
        """The message retained at `topic`, if any: subscribe, then a ping round trip (the
        broker sends retained messages before it answers the ping), then unsubscribe."""
        client = await self._connected()
        seen: list[bytes] = []
        self._watchers.setdefault(topic, []).append(seen)
        try:
            await client.subscribe(topic)
            await client.ping()
            await client.unsubscribe(topic)
        finally:
            self._unwatch(topic, seen)
        return seen[-1] if seen else None

    def _unwatch(self, topic: str, seen: list[bytes]) -> None:
        self._watchers[topic].remove(seen)
        if not self._watchers[topic]:
            del self._watchers[topic]

    async def _remove(self, device_id: str) -> None:
        answers = await self._dynsec(
            [
                {"command": "deleteClient", "username": device_id},
                {"command": "deleteRole", "rolename": ROLE_PREFIX + device_id},
            ]
        )
        self._raise_errors(answers, ignore={"Client not found", "Role not found"})
        client = await self._connected()
        await client.publish(self._twin_topic(device_id), b"", qos=1, retain=True)

    async def _undo(self, device_id: str, created_client: bool, created_role: bool) -> None:
        """Delete what a failed upsert created, and only that (the record will not name this
        hub; a client or role that was there before is left alone)."""
        commands = []
        if created_client:
            commands.append({"command": "deleteClient", "username": device_id})
        if created_role:
            commands.append({"command": "deleteRole", "rolename": ROLE_PREFIX + device_id})
        if not commands:
            return
        try:
            async with asyncio.timeout(UNDO_SECONDS):
                self._raise_errors(await self._dynsec(commands))
                if created_client:
                    client = await self._connected()
                    await client.publish(self._twin_topic(device_id), b"", retain=True)
        except (ConnectorError, TimeoutError) as error:
            log.warning("could not delete the unfinished client %r: %s", device_id, error)

    # The admin connection ---------------------------------------------------------------------

    async def _connected(self) -> MqttClient:
        client = self._client
        if client is not None and client.connected:
            return client
        async with self._lock:
            if self._client is not None and self._client.connected:
                return self._client
            client = MqttClient(
                self.where,
                self.settings.host,
                self.settings.port,
                client_id=self._tag,
                username=self.settings.username,
                password=self.settings.password,
                ssl_context=tls_context(self.settings.ca_file) if self.settings.tls else None,
                on_message=self._on_message,
                on_lost=self._on_lost,
            )
            await client.connect()
            try:
                granted = await client.subscribe(RESPONSE_TOPIC)
            except BaseException:
                await client.close()
                raise
            if granted[0] == mqtt.SUBSCRIBE_FAILURE:
                await client.close()
                raise ConnectorError(
                    f"{self.where}: {self.settings.username!r} may not use the dynamic security"
                    f" API ({REQUEST_TOPIC}); give it Mosquitto's admin role"
                )
            self._client = client
            return client

    def _on_message(self, message: mqtt.Publish) -> None:
        if message.topic == RESPONSE_TOPIC:
            self._on_responses(message.payload)
            return
        for seen in self._watchers.get(message.topic, []):
            seen.append(message.payload)

    def _on_responses(self, payload: bytes) -> None:
        """Responses go to every admin client (other devprov processes too): ours carry our
        tag in their correlationData."""
        try:
            responses = parse_json(payload).get("responses", [])
        except (JsonRefused, AttributeError):
            return
        mine: dict[str, list[dict[str, Any]]] = {}
        for response in responses:
            correlation = str(response.get("correlationData", ""))
            key, _, _ = correlation.rpartition(":")
            if key in self._waiting:
                mine.setdefault(key, []).append(response)
        for key, answers in mine.items():
            future = self._waiting.get(key)
            if future is not None and not future.done():
                future.set_result(answers)

    def _on_lost(self, error: ConnectorError) -> None:
        for future in self._waiting.values():
            if not future.done():
                future.set_exception(error)

    @contextlib.asynccontextmanager
    async def _budget(self) -> AsyncIterator[None]:
        try:
            async with asyncio.timeout(self.timeout):
                yield
        except TimeoutError:
            raise ConnectorError(f"{self.where} did not answer within {self.timeout:g} s") from None

    # Topics ------------------------------------------------------------------------------------

    def _acls(self, device_id: str) -> list[dict[str, Any]]:
        acls = []
        for template in self.settings.topics:
            topic = template.replace(_PLACEHOLDER, device_id)
            for kind in ("publishClientSend", "publishClientReceive", "subscribePattern",
                         "unsubscribePattern"):  # fmt: skip
                acls.append({"acltype": kind, "topic": topic, "allow": True})
        return acls

    def _twin_topic(self, device_id: str) -> str:
        return self.settings.twin_topic.replace(_PLACEHOLDER, device_id)

    def _twin_filter(self) -> str:
        return self.settings.twin_topic.replace(_PLACEHOLDER, "+")


def _check_device_id(device_id: str) -> None:
    """A device id becomes a topic level in its ACLs: one that is a wildcard or spans levels
    would open other devices' topics."""
    if not device_id or any(char in device_id for char in "+#/\x00"):
        raise ConnectorError(
            f"device id {device_id!r} cannot be a Mosquitto topic level (no +, #, / or NUL)"
        )


def _password(identity: DeviceIdentity) -> str | None:
    """The device's primary key as it holds it (base64 text); None for X.509 devices."""
    authentication = identity.authentication
    if authentication.get("type") != "sas":
        return None
    key = (authentication.get("symmetricKey") or {}).get("primaryKey")
    if not key:
        raise ConnectorError(f"device {identity.device_id!r} has no primary key for Mosquitto")
    return str(key)
