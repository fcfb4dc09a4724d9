"""The baseline: a bare TLS server that answers every request at once with a fixed result.

It speaks just enough HTTP/1.1, MQTT and AMQP (devprov's own codecs) for the generator, does
no attestation, storage or allocation, and runs in a process of its own, as devprov does.
devprov's figures are reported as a ratio to it: what the machine, Python's TLS and the
generator allow."""

from __future__ import annotations

import argparse
import asyncio
import ssl
from pathlib import Path

from devprov.keyring import load_sealer
from devprov.protocol import amqp, mqtt
from devprov.protocol.amqp_frames import Message, accepted
from devprov.server.tls import server_context

_ASSIGNED = (
    b'{"operationId":"0","status":"assigned",'
    b'"registrationState":{"status":"assigned","assignedHub":"baseline.example"}}'
)
_HTTP_ANSWER = (
    b"HTTP/1.1 200 OK\r\nContent-Type: application/json; charset=utf-8\r\n"
    + f"Content-Length: {len(_ASSIGNED)}\r\n\r\n".encode()
    + _ASSIGNED
)


class _Answerer(asyncio.Protocol):
    """Buffers what a connection receives; subclasses answer it."""

    def __init__(self) -> None:
        self.buffer = bytearray()
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport


class HttpAnswerer(_Answerer):
    def data_received(self, data: bytes) -> None:
        self.buffer += data
        while (end := self.buffer.find(b"\r\n\r\n")) >= 0:
            length = 0
            for line in bytes(self.buffer[:end]).split(b"\r\n"):
                if line.lower().startswith(b"content-length:"):
                    length = int(line.split(b":", 1)[1])
            if len(self.buffer) < end + 4 + length:
                return
            del self.buffer[: end + 4 + length]
            assert self.transport is not None
            self.transport.write(_HTTP_ANSWER)


class MqttAnswerer(_Answerer):
    def data_received(self, data: bytes) -> None:
        assert self.transport is not None
        self.buffer += data
        while (frame := mqtt.take_frame(self.buffer, 1024 * 1024)) is not None:
            packet = mqtt.decode(*frame)
            if isinstance(packet, mqtt.Connect):
                self.transport.write(mqtt.encode(mqtt.ConnAck(0)))
            elif isinstance(packet, mqtt.Subscribe):
                self.transport.write(mqtt.encode(mqtt.SubAck(packet.packet_id, (1,))))
            elif isinstance(packet, mqtt.Publish):
                if packet.qos and packet.packet_id:
                    self.transport.write(mqtt.encode(mqtt.PubAck(packet.packet_id)))
                rid = packet.topic.split("$rid=", 1)[-1].split("&", 1)[0]
                answer = mqtt.Publish(f"$dps/registrations/res/200/?$rid={rid}", _ASSIGNED)
                self.transport.write(mqtt.encode(answer))
            elif isinstance(packet, mqtt.Disconnect):
                self.transport.close()


class AmqpAnswerer(_Answerer):
    """Takes any SASL PLAIN and every link, and answers every message at once."""

    def __init__(self) -> None:
        super().__init__()
        self.connection = amqp.ServerConnection(mechanisms=("PLAIN",))

    def data_received(self, data: bytes) -> None:
        assert self.transport is not None
        try:
            events = self.connection.receive_data(data)
        except amqp.ProtocolError:
            self.transport.close()
            return
        for event in events:
            if isinstance(event, amqp.SaslStarted):
                self.connection.sasl_outcome(amqp.SASL_OK)
                self.transport.write(self.connection.data_to_send())
                self.data_received(b"")
                return
            if isinstance(event, amqp.LinkAttached):
                self.connection.accept_link(event.link)
            elif isinstance(event, amqp.MessageReceived):
                self.connection.settle(event.link, event.delivery_id, accepted())
                reply = Message(correlation_id=event.message.correlation_id, data=_ASSIGNED)
                for link in self.connection.links():
                    if not link.receiving:
                        self.connection.send_message(link, reply)
        self.transport.write(self.connection.data_to_send())
        if self.connection.state is amqp.State.CLOSED:
            self.transport.close()


async def serve(
    context: ssl.SSLContext, host: str, https_port: int, mqtt_port: int, amqp_port: int = 0
) -> None:
    loop = asyncio.get_running_loop()
    await loop.create_server(HttpAnswerer, host, https_port, ssl=context, reuse_address=True)
    await loop.create_server(MqttAnswerer, host, mqtt_port, ssl=context, reuse_address=True)
    if amqp_port:
        await loop.create_server(AmqpAnswerer, host, amqp_port, ssl=context, reuse_address=True)
    await asyncio.Event().wait()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--cert", required=True)
    parser.add_argument("--key", required=True)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--https-port", type=int, required=True)
    parser.add_argument("--mqtt-port", type=int, required=True)
    parser.add_argument("--amqp-port", type=int, default=0)
    arguments = parser.parse_args()
    key = Path(arguments.key)  # a devprov data dir's DIR/tls/server-key.pem is sealed
    sealed = b"ENCRYPTED" in key.read_bytes()[:64]
    sealer = load_sealer(key.parent.parent, create=False) if sealed else None
    context = server_context(Path(arguments.cert), key, sealer)
    asyncio.run(
        serve(
            context, arguments.host, arguments.https_port, arguments.mqtt_port, arguments.amqp_port
        )
    )


if __name__ == "__main__":
    main()
