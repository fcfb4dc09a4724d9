"""A small asyncio MQTT 3.1.1 client on devprov's own sans-I/O codec (protocol/mqtt.py).

The `mosquitto` connector's admin connection needs little: CONNECT, SUBSCRIBE, PUBLISH at QoS 0
and 1, PINGREQ as a keep-alive and as a barrier (a broker answers packets in order, so once a
PINGRESP is in, everything it sent before has arrived). Why not a library: `aiomqtt`, the
maintained asyncio client, needs paho-mqtt 2, and the official `azure-iot-device` the tests drive
pins paho-mqtt below 2; the codec devprov already has is tested both ways and is all it takes.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import ssl
from collections import deque
from collections.abc import Callable
from typing import Any

from devprov.hubs.connector import ConnectorError
from devprov.protocol import mqtt

log = logging.getLogger(__name__)
MAX_PACKET_BYTES = 16 * 1024 * 1024
CONNACK_REASONS = {
    mqtt.UNACCEPTABLE_PROTOCOL_VERSION: "it does not speak MQTT 3.1.1",
    mqtt.IDENTIFIER_REJECTED: "it rejected the client id",
    mqtt.SERVER_UNAVAILABLE: "it is unavailable",
    mqtt.BAD_USERNAME_OR_PASSWORD: "it refused the user name or password",
    mqtt.NOT_AUTHORIZED: "it refused the user name or password (not authorised)",
}
OnMessage = Callable[[mqtt.Publish], None]
OnLost = Callable[[ConnectorError], None]


class MqttClient:
    """One connection to a broker. Calls fail with ConnectorError once it is lost; `connected`
    tells, and a new client is made to reconnect."""

    def __init__(
        self,
        where: str,
        host: str,
        port: int,
        *,
        client_id: str,
        username: str | None,
        password: str | None,
        ssl_context: ssl.SSLContext | None,
        on_message: OnMessage,
        on_lost: OnLost | None = None,
        keep_alive: int = 30,
    ) -> None:
        self.where = where
        self.host, self.port = host, port
        self.client_id, self.username, self.password = client_id, username, password
        self.ssl_context = ssl_context
        self.on_message = on_message
        self.on_lost = on_lost
        self.keep_alive = keep_alive
        self._writer: asyncio.StreamWriter | None = None
        self._tasks: list[asyncio.Task[None]] = []
        self._acks: dict[tuple[type, int], asyncio.Future[mqtt.Packet]] = {}
        self._pings: deque[asyncio.Future[None]] = deque()
        self._connack: asyncio.Future[mqtt.ConnAck] | None = None
        self._next_id = 0
        self._lost: ConnectorError | None = None

    @property
    def connected(self) -> bool:
        return self._writer is not None and self._lost is None

    async def connect(self) -> None:
        """Open the connection and wait for CONNACK (the caller bounds the wait)."""
        try:
            reader, writer = await asyncio.open_connection(
                self.host, self.port, ssl=self.ssl_context, limit=MAX_PACKET_BYTES
            )
        except ssl.SSLCertVerificationError as error:
            raise ConnectorError(
                f"{self.where}: its TLS certificate is not trusted ({error.verify_message});"
                " name its CA in the connection string (?ca=/path/ca.pem) or SSL_CERT_FILE"
            ) from None
        except OSError as error:
            raise ConnectorError(
                f"cannot connect to {self.where}: {error.strerror or error}"
            ) from None
        self._writer = writer
        self._connack = asyncio.get_running_loop().create_future()
        self._tasks = [asyncio.create_task(self._read(reader), name=f"mqtt-read {self.where}")]
        self._send(
            mqtt.Connect(
                client_id=self.client_id,
                username=self.username,
                password=self.password.encode() if self.password is not None else None,
                keep_alive=self.keep_alive,
                clean_session=True,
            )
        )
        try:
            connack = await self._connack
        except BaseException:
            await self.close()
            raise
        if connack.return_code != mqtt.ACCEPTED:
            await self.close()
            reason = CONNACK_REASONS.get(connack.return_code, "it refused")
            raise ConnectorError(
                f"{self.where} refused the connection (CONNACK {connack.return_code}): {reason}"
            )
        self._tasks.append(asyncio.create_task(self._ping_forever(), name="mqtt-keepalive"))

    async def close(self) -> None:
        writer, self._writer = self._writer, None
        if writer is not None and self._lost is None:
            with contextlib.suppress(Exception):
                writer.write(mqtt.encode(mqtt.Disconnect()))
        self._fail(ConnectorError(f"the connection to {self.where} was closed"))
        for task in self._tasks:
            if task is not asyncio.current_task():
                task.cancel()
        if writer is not None:
            writer.close()
            with contextlib.suppress(Exception):
                await writer.wait_closed()

    async def subscribe(self, *filters: str, qos: int = 0) -> tuple[int, ...]:
        packet_id = self._packet_id()
        ack = await self._request(
            mqtt.Subscribe(packet_id, tuple((f, qos) for f in filters)), mqtt.SubAck, packet_id
        )
        assert isinstance(ack, mqtt.SubAck)
        return ack.return_codes

    async def unsubscribe(self, *filters: str) -> None:
        packet_id = self._packet_id()
        await self._request(mqtt.Unsubscribe(packet_id, filters), mqtt.UnsubAck, packet_id)

    async def publish(
        self, topic: str, payload: bytes, *, qos: int = 1, retain: bool = False
    ) -> None:
        """Publish; at QoS 1, wait for the broker's PUBACK."""
        if qos == 0:
            self._send(mqtt.Publish(topic, payload, 0, None, retain))
            return
        packet_id = self._packet_id()
        await self._request(
            mqtt.Publish(topic, payload, 1, packet_id, retain), mqtt.PubAck, packet_id
        )

    async def ping(self) -> None:
        """A round trip: whatever the broker sent before answering it has been handled."""
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._pings.append(future)
        self._send(mqtt.PingReq())
        await future

    async def _request(self, packet: mqtt.Packet, answer: type, packet_id: int) -> mqtt.Packet:
        future: asyncio.Future[mqtt.Packet] = asyncio.get_running_loop().create_future()
        self._acks[(answer, packet_id)] = future
        try:
            self._send(packet)
            return await future
        finally:
            self._acks.pop((answer, packet_id), None)

    def _send(self, packet: mqtt.Packet) -> None:
        if self._lost is not None:
            raise self._lost
        if self._writer is None:
            raise ConnectorError(f"not connected to {self.where}")
        self._writer.write(mqtt.encode(packet))

    def _packet_id(self) -> int:
        for _ in range(0xFFFF):
            self._next_id = self._next_id % 0xFFFF + 1
            if all(key[1] != self._next_id for key in self._acks):
                return self._next_id
        raise ConnectorError(f"too many requests waiting on {self.where}")

    async def _read(self, reader: asyncio.StreamReader) -> None:
        buffer = bytearray()
        try:
            while True:
                while (frame := mqtt.take_frame(buffer, MAX_PACKET_BYTES)) is None:
                    chunk = await reader.read(65536)
                    if not chunk:
                        raise ConnectorError(f"{self.where} closed the connection")
                    buffer += chunk
                self._dispatch(mqtt.decode(*frame))
        except asyncio.CancelledError:
            raise
        except ConnectorError as error:
            self._fail(error)
        except (OSError, mqtt.ProtocolError) as error:
            self._fail(ConnectorError(f"the connection to {self.where} failed: {error}"))

    def _dispatch(self, packet: mqtt.Packet) -> None:
        if isinstance(packet, mqtt.ConnAck):
            if self._connack is not None and not self._connack.done():
                self._connack.set_result(packet)
        elif isinstance(packet, mqtt.Publish):
            if packet.qos == 1 and packet.packet_id is not None:
                self._send(mqtt.PubAck(packet.packet_id))
            try:
                self.on_message(packet)
            except Exception:
                log.exception("handling a message from %s failed", self.where)
        elif isinstance(packet, mqtt.PingResp):
            if self._pings:
                ping = self._pings.popleft()
                if not ping.done():
                    ping.set_result(None)
        elif isinstance(packet, mqtt.SubAck | mqtt.UnsubAck | mqtt.PubAck):
            ack = self._acks.get((type(packet), packet.packet_id))
            if ack is not None and not ack.done():
                ack.set_result(packet)

    def _fail(self, error: ConnectorError) -> None:
        """The connection is gone: every waiting call fails with why."""
        if self._lost is None:
            self._lost = error
            if self.on_lost is not None:
                self.on_lost(error)
        waiting: list[asyncio.Future[Any]] = [*self._acks.values(), *self._pings]
        if self._connack is not None:
            waiting.append(self._connack)
        for future in waiting:
            if not future.done():
                future.set_exception(self._lost)
        self._pings.clear()

    async def _ping_forever(self) -> None:
        """Keep the connection alive; one that does not answer within keep-alive is lost."""
        while self.connected:
            await asyncio.sleep(self.keep_alive / 2)
            try:
                async with asyncio.timeout(self.keep_alive):
                    await self.ping()
            except ConnectorError:
                return
            except TimeoutError:
                self._fail(ConnectorError(f"{self.where} stopped answering"))
                await self.close()
                return
