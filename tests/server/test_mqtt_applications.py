"""One MQTT listener, several applications: the session picks one at CONNECT and hands it the
client; an application's own failure is a CONNACK 3, never a silent wait."""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine
from typing import Any

from devprov.protocol import mqtt
from devprov.server.mqtt_session import Link, MqttSession, Peer, Refusal
from tests.server.test_mqtt_session import Wire


class Client:
    def __init__(self, name: str, link: Link) -> None:
        self.name = name
        self.link = link
        self.published: list[str] = []
        self.gone = False

    def subscribe(self, topic_filter: str, qos: int) -> int:
        return 0

    def publication(self, packet: mqtt.Publish) -> Coroutine[Any, Any, None] | None:
        if packet.topic == "forbidden":
            raise ValueError("not yours")
        self.published.append(packet.topic)
        return None

    def closed(self) -> None:
        self.gone = True


class App:
    def __init__(self, prefix: str, *, max_packet_bytes: int = 1024, fail: bool = False) -> None:
        self.prefix = prefix
        self.max_packet_bytes = max_packet_bytes
        self.fail = fail
        self.clients: list[Client] = []

    def claims(self, connect: mqtt.Connect) -> bool:
        return (connect.username or "").startswith(self.prefix)

    async def accept(self, connect: mqtt.Connect, peer: Peer, link: Link) -> Client:
        if self.fail:
            raise RuntimeError("a bug in the application")
        if connect.password != b"ok":
            raise Refusal(mqtt.NOT_AUTHORIZED, "bad password")
        self.clients.append(Client(connect.client_id, link))
        return self.clients[-1]


async def session_for(*applications: App) -> tuple[MqttSession, Wire]:
    wire = Wire()
    return MqttSession(list(applications), wire.write, wire.close), wire


async def settle() -> None:
    for _ in range(5):
        await asyncio.sleep(0)


async def test_the_first_application_that_claims_the_user_name_gets_the_client() -> None:
    hub, dps = App("hub."), App("")
    session, wire = await session_for(hub, dps)
    session.data_received(mqtt.encode(mqtt.Connect("dev-1", "hub.example/dev-1", b"ok")))
    await settle()
    session.data_received(mqtt.encode(mqtt.Publish("devices/dev-1/messages/events/", b"x")))

    assert wire.packets == [mqtt.ConnAck(mqtt.ACCEPTED)]
    assert [c.name for c in hub.clients] == ["dev-1"] and dps.clients == []
    assert hub.clients[0].published == ["devices/dev-1/messages/events/"]
    assert session.connection.max_packet_bytes == hub.max_packet_bytes


async def test_a_refusal_is_its_connack_and_an_application_bug_is_connack_3() -> None:
    for application, code in ((App(""), mqtt.NOT_AUTHORIZED), (App("", fail=True), 3)):
        session, wire = await session_for(application)
        session.data_received(mqtt.encode(mqtt.Connect("dev-1", "x", b"no")))
        await settle()
        assert wire.packets == [mqtt.ConnAck(code)] and wire.closed


async def test_a_publication_the_client_may_not_make_closes_the_connection() -> None:
    app = App("")
    session, wire = await session_for(app)
    session.data_received(mqtt.encode(mqtt.Connect("dev-1", "x", b"ok")))
    await settle()
    session.data_received(mqtt.encode(mqtt.Publish("forbidden", b"x")))
    assert wire.closed
    session.connection_lost()
    assert app.clients[0].gone
