"""One MQTT connection, whatever carries its bytes, served by the application its CONNECT chose.

The session is the thin loop around the sans-I/O codec (protocol/mqtt.py). It owns what every
MQTT application needs: the CONNECT deadline (from accept, not restarted by bytes) and
keep-alive (1.5 x the client's, at most 1.5 x `max_keep_alive`), packets a client sends before its
CONNACK, PUBACKs, a cap on requests in progress, and closing. At CONNECT it asks each
application in turn whether the user name is one of its own; the first that claims it decides
whether to accept, and then owns the client's subscriptions and publications.

Idle connections cost little: no task of their own, one timer for the keep-alive.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Coroutine, Sequence
from dataclasses import dataclass
from typing import Any, Literal, Protocol

from cryptography import x509

from devprov.protocol import mqtt

log = logging.getLogger(__name__)
MAX_REQUESTS_IN_PROGRESS = 8
MAX_HELD_BEFORE_CONNACK = 16
CONNECT_TIMEOUT_SECONDS = 30.0
MAX_KEEP_ALIVE_SECONDS = 1767  # IoT Hub's ceiling


@dataclass(frozen=True)
class SessionLimits:
    """How long a client may take to CONNECT (from accept, whatever it sends meanwhile), and
    the longest keep-alive honoured (a client asking for none gets this one)."""

    connect_timeout: float = CONNECT_TIMEOUT_SECONDS
    max_keep_alive: int = MAX_KEEP_ALIVE_SECONDS

    def idle_timeout(self, keep_alive: int) -> float:
        """Seconds of silence after which a client is gone (MQTT 3.1.2.10: 1.5 x keep-alive)."""
        return 1.5 * min(keep_alive or self.max_keep_alive, self.max_keep_alive)


DEFAULT_LIMITS = SessionLimits()


@dataclass(frozen=True)
class Peer:
    """What the transport knows of the client: the certificate chain it presented (leaf
    first), and what carries it (`mqtt` over TLS, or `mqtt-ws` over a WebSocket)."""

    certificates: tuple[x509.Certificate, ...] = ()
    transport: Literal["mqtt", "mqtt-ws"] = "mqtt"


class OpenSessions:
    """How many MQTT connections are open, by what carries them (read by the metrics)."""

    def __init__(self) -> None:
        self.by_transport: dict[str, int] = {"mqtt": 0, "mqtt-ws": 0}

    def opened(self, transport: str) -> None:
        self.by_transport[transport] = self.by_transport.get(transport, 0) + 1

    def closed(self, transport: str) -> None:
        self.by_transport[transport] -= 1


class Refusal(Exception):
    """An application refuses a CONNECT with this CONNACK return code and reason (logged)."""

    def __init__(self, return_code: int, reason: str) -> None:
        super().__init__(reason)
        self.return_code = return_code


class Link(Protocol):
    """What an application may do to its client."""

    def publish(self, topic: str, payload: bytes, qos: int = 1) -> bool:
        """Send a PUBLISH; False when the connection is closed or the client cannot take it."""
        ...

    def close(self, reason: str) -> None: ...


class MqttClient(Protocol):
    """An accepted client, as its application serves it."""

    @property
    def name(self) -> str:
        """Who the client is, for logs."""
        ...

    def subscribe(self, topic_filter: str, qos: int) -> int:
        """The QoS granted for one filter, or mqtt.SUBSCRIBE_FAILURE."""
        ...

    def publication(self, packet: mqtt.Publish) -> Coroutine[Any, Any, None] | None:
        """Handle a PUBLISH: work to run as a request (capped), or None when done already.

        Raise ValueError (e.g. a TopicError) for a publication the client may not make: the
        connection is closed."""
        ...

    def closed(self) -> None:
        """The connection is gone."""
        ...


class MqttApplication(Protocol):
    """A service spoken over MQTT on devprov's listeners."""

    max_packet_bytes: int
    """The largest packet its clients may send once accepted."""

    def claims(self, connect: mqtt.Connect) -> bool:
        """Whether this CONNECT (its user name) is for this application."""
        ...

    async def accept(self, connect: mqtt.Connect, peer: Peer, link: Link) -> MqttClient:
        """Accept the client, or raise `Refusal`."""
        ...


class MqttSession:
    """One client's MQTT connection."""

    def __init__(
        self,
        applications: Sequence[MqttApplication],
        write: Callable[[bytes], None],
        close: Callable[[], None],
        peer: Peer = Peer(),
        max_packet_bytes: int = mqtt.DEFAULT_MAX_PACKET_BYTES,
        open_sessions: OpenSessions | None = None,
        limits: SessionLimits = DEFAULT_LIMITS,
    ) -> None:
        self.applications = applications
        self.peer = peer
        self.limits = limits
        self.open_sessions = open_sessions
        if open_sessions is not None:
            open_sessions.opened(peer.transport)
        self.connection = mqtt.ServerConnection(max_packet_bytes=max_packet_bytes)
        self._write = write
        self._close = close
        self.client: MqttClient | None = None
        self._held: list[mqtt.Packet] = []
        self._requests: set[asyncio.Task[None]] = set()
        self._last_seen = asyncio.get_running_loop().time()
        self._timer: asyncio.TimerHandle | None = None
        self._connect_timer: asyncio.TimerHandle | None = asyncio.get_running_loop().call_later(
            limits.connect_timeout, self._connect_expired
        )

    # Bytes in, connection events ------------------------------------------------------

    def data_received(self, data: bytes) -> None:
        self._last_seen = asyncio.get_running_loop().time()
        try:
            for packet in self.connection.receive_data(data):
                self._handle(packet)
        except mqtt.RemoteProtocolError as error:
            log.info("MQTT protocol error from %s: %s", self._who(), error)
            if error.connack_code is not None and self.connection.state is mqtt.State.CONNECTING:
                self._write(self.connection.send(mqtt.ConnAck(error.connack_code)))
            self.close()
        except mqtt.LocalProtocolError:
            log.exception("MQTT session of %s broke the protocol itself", self._who())
            self.close()
        if self.connection.state is mqtt.State.CLOSED:
            self.close()

    def connection_lost(self) -> None:
        if self.open_sessions is not None:
            self.open_sessions.closed(self.peer.transport)
            self.open_sessions = None  # counted once, however often this is called
        self.connection.close()
        for timer in (self._timer, self._connect_timer):
            if timer is not None:
                timer.cancel()
        for task in self._requests:
            task.cancel()
        if self.client is not None:
            self.client.closed()

    def close(self) -> None:
        self.connection.close()
        self._close()

    @property
    def requests_in_progress(self) -> int:
        return len(self._requests)

    def _who(self) -> str:
        return self.client.name if self.client else "an unidentified client"

    def _connect_expired(self) -> None:
        self._connect_timer = None
        if self.client is None:
            log.info(
                "MQTT client %s not connected %.0f s after it came; closing",
                self._who(),
                self.limits.connect_timeout,
            )
            self.close()

    def _watch(self, seconds: float | None) -> None:
        """Close the connection after `seconds` of silence (checked when the timer fires)."""
        if self._timer is not None:
            self._timer.cancel()
        if seconds is None:
            return
        loop = asyncio.get_running_loop()

        def check() -> None:
            idle = loop.time() - self._last_seen
            if idle >= seconds:
                log.info("MQTT client %s silent for %.0f s; closing", self._who(), idle)
                self.close()
            else:
                self._timer = loop.call_later(seconds - idle, check)

        self._timer = loop.call_later(seconds, check)

    # Packets out -------------------------------------------------------------------------

    def _send(self, packet: mqtt.Packet) -> bool:
        try:
            self._write(self.connection.send(packet))
        except mqtt.ProtocolError as error:
            log.info("closing MQTT connection of %s: %s", self._who(), error)
            self.close()
            return False
        return True

    def publish(self, topic: str, payload: bytes, qos: int = 1) -> bool:
        """The application's `Link.publish`."""
        if self.connection.state is not mqtt.State.CONNECTED:
            return False
        return self._send(mqtt.Publish(topic, payload, qos=qos))

    def close_for(self, reason: str) -> None:
        """The application's `Link.close`."""
        log.info("closing MQTT connection of %s: %s", self._who(), reason)
        self.close()

    # Packets in --------------------------------------------------------------------------

    def _handle(self, packet: mqtt.Packet) -> None:
        if isinstance(packet, mqtt.Connect):
            self._start_request(self._connect(packet))
        elif self.connection.state is mqtt.State.CONNECTING:
            if len(self._held) >= MAX_HELD_BEFORE_CONNACK:
                log.info("closing MQTT connection: too many packets before CONNACK")
                self.close()
                return
            self._held.append(packet)  # sent before our CONNACK: handled once accepted
        elif self.client is None:
            return
        elif isinstance(packet, mqtt.Subscribe):
            granted = tuple(self.client.subscribe(topic, qos) for topic, qos in packet.topics)
            self._send(mqtt.SubAck(packet.packet_id, granted))
        elif isinstance(packet, mqtt.Unsubscribe):
            self._send(mqtt.UnsubAck(packet.packet_id))
        elif isinstance(packet, mqtt.PingReq):
            self._send(mqtt.PingResp())
        elif isinstance(packet, mqtt.Publish):
            self._publication(self.client, packet)

    async def _connect(self, packet: mqtt.Connect) -> None:
        """Hand the CONNECT to the application that claims it; answer with its verdict.

        An application's own bug must not leave the device waiting for a CONNACK until the
        connect timeout: it is answered 3 (server unavailable), which clients retry."""
        application = next((app for app in self.applications if app.claims(packet)), None)
        try:
            if application is None:
                raise Refusal(mqtt.BAD_USERNAME_OR_PASSWORD, "no service here takes that user name")
            client = await application.accept(packet, self.peer, _SessionLink(self))
        except Refusal as refusal:
            return self._refuse(refusal.return_code, str(refusal))
        except Exception:
            log.exception("MQTT CONNECT of %r failed", packet.client_id)
            return self._refuse(mqtt.SERVER_UNAVAILABLE, "internal error")
        if self.connection.state is not mqtt.State.CONNECTING:
            client.closed()  # the client left while we decided
            return None
        self.client = client
        self.connection.max_packet_bytes = application.max_packet_bytes
        self._send(mqtt.ConnAck(mqtt.ACCEPTED))
        if self._connect_timer is not None:
            self._connect_timer.cancel()
            self._connect_timer = None
        self._watch(self.limits.idle_timeout(self.connection.keep_alive))
        if (current := asyncio.current_task()) is not None:
            self._requests.discard(current)  # held requests below count on their own
        held, self._held = self._held, []
        for waiting in held:
            self._handle(waiting)
        return None

    def _refuse(self, return_code: int, reason: str) -> None:
        log.info("MQTT CONNECT refused (%d): %s", return_code, reason)
        if self.connection.state is mqtt.State.CONNECTING:
            self._send(mqtt.ConnAck(return_code))
        self.close()

    def _publication(self, client: MqttClient, packet: mqtt.Publish) -> None:
        if packet.qos == 1 and packet.packet_id is not None:
            self._send(mqtt.PubAck(packet.packet_id))
        try:
            work = client.publication(packet)
        except ValueError as error:
            log.info("closing MQTT connection of %s: %s", self._who(), error)
            self.close()
            return
        if work is None:
            return
        if len(self._requests) >= MAX_REQUESTS_IN_PROGRESS:
            work.close()
            log.info("closing MQTT connection of %s: too many requests at once", self._who())
            self.close()
            return
        self._start_request(work)

    def _start_request(self, work: Coroutine[Any, Any, None]) -> None:
        task = asyncio.create_task(work)
        self._requests.add(task)
        task.add_done_callback(self._requests.discard)


@dataclass(frozen=True)
class _SessionLink:
    session: MqttSession

    def publish(self, topic: str, payload: bytes, qos: int = 1) -> bool:
        return self.session.publish(topic, payload, qos)

    def close(self, reason: str) -> None:
        self.session.close_for(reason)
