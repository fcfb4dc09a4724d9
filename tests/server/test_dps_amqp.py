"""DPS over AMQP against a running devprov, over real TLS: the exchange, and bad input.

A test plays the device with raw frames (tests/protocol/amqp_peer.py) where it misbehaves,
and with the load generator's client where it behaves. After each misdeed the connection is
closed with its AMQP condition, nothing is registered, and the server still serves devices.
"""

from __future__ import annotations

import asyncio
import json
import ssl
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from devprov.bench.fleet import Fleet
from devprov.bench.wire import AmqpClient
from devprov.protocol import amqp
from devprov.protocol.amqp_frames import (
    AMQP_HEADER,
    SASL_HEADER,
    Attach,
    Begin,
    Close,
    Detach,
    Disposition,
    Flow,
    Message,
    Open,
    SaslInit,
    SaslMechanisms,
    SaslOutcome,
    Transfer,
    terminus,
)
from devprov.protocol.amqp_types import Described
from tests.conftest import Running, start_devprov
from tests.helpers import create_group
from tests.protocol.amqp_peer import Frame, client_frame, split

WAIT_SECONDS = 10.0


class Device:
    """A raw AMQP client over TLS to devprov's AMQP port."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer
        self.received = b""

    def send(self, data: bytes) -> None:
        self.writer.write(data)

    async def until_closed(self) -> list[Any]:
        """Everything the server says until it closes the connection."""
        async with asyncio.timeout(WAIT_SECONDS):
            while chunk := await self.reader.read(65536):
                self.received += chunk
        return split(self.received)

    async def items(self, count: int) -> list[Any]:
        """The next `count` headers or frames."""
        async with asyncio.timeout(WAIT_SECONDS):
            while True:
                try:
                    items = split(self.received)
                except AssertionError:  # a frame cut in two: read on
                    items = []
                if len(items) >= count:
                    break
                chunk = await self.reader.read(65536)
                assert chunk, f"closed after {split(self.received)}"
                self.received += chunk
        self.received = b""
        return items

    async def sasl_plain(self, user: str, password: str) -> int:
        self.send(SASL_HEADER)
        header, mechanisms = await self.items(2)
        assert header == SASL_HEADER
        assert isinstance(mechanisms, Frame)
        assert mechanisms.performative == SaslMechanisms(("TPM", "PLAIN"))
        init = b"\x00" + user.encode() + b"\x00" + password.encode()
        self.send(client_frame(SaslInit("PLAIN", init), sasl=True))
        (outcome,) = await self.items(1)
        assert isinstance(outcome, Frame) and isinstance(outcome.performative, SaslOutcome)
        return outcome.performative.code

    async def open(self) -> None:
        self.send(AMQP_HEADER + client_frame(Open("test-device")))
        await self.items(2)
        self.send(client_frame(Begin(None, 0, 2048, 0xFFFFFFFF)))
        await self.items(1)

    async def attach_sender(self, address: str) -> list[Any]:
        self.send(client_frame(Attach("requests", 1, False, target=terminus(0x29, address))))
        return await self.items(2)


async def connect(running: Running) -> Device:
    context = ssl.create_default_context(cafile=running.ca)
    port = running.devprov.instance.amqp_port
    reader, writer = await asyncio.open_connection("localhost", port, ssl=context)
    return Device(reader, writer)


@pytest.fixture
async def fleet(devprov: Running) -> AsyncIterator[Fleet]:
    await devprov.service().link_hub("hub.example")
    group = await create_group(devprov, "amqp-fleet")
    yield Fleet(devprov.id_scope, group["attestation"]["symmetricKey"]["primaryKey"], "amqp")


def address(fleet: Fleet, number: int) -> str:
    return f"{fleet.id_scope}/registrations/{fleet.registration_id(number)}"


async def authenticated(running: Running, fleet: Fleet, number: int) -> Device:
    device = await connect(running)
    token = fleet.token(fleet.registration_id(number))
    assert await device.sasl_plain(address(fleet, number), token) == amqp.SASL_OK
    await device.open()
    return device


async def registers(running: Running, fleet: Fleet, number: int) -> dict[str, Any]:
    """A well-behaved device registers (and so the server is still up)."""
    context = ssl.create_default_context(cafile=running.ca)
    port = running.devprov.instance.amqp_port
    reader, writer = await asyncio.open_connection("localhost", port, ssl=context)
    client = AmqpClient(reader, writer)
    try:
        registration_id = fleet.registration_id(number)
        await client.connect(address(fleet, number), fleet.token(registration_id))
        kind = {"iotdps-operation-type": "iotdps-register"}
        _, body = await client.request(kind, fleet.body(registration_id))
        await client.close()
    finally:
        writer.close()
    result: dict[str, Any] = body
    return result


async def not_registered(running: Running, fleet: Fleet, number: int) -> None:
    registration_id = fleet.registration_id(number)
    status, _, _ = await running.service().request("GET", f"/registrations/{registration_id}")
    assert status == 404


def closing_error(items: list[Any]) -> Any:
    last = items[-1]
    assert isinstance(last, Frame) and isinstance(last.performative, Close), items
    return last.performative.error


async def test_a_device_registers_and_polls(devprov: Running, fleet: Fleet) -> None:
    body = await registers(devprov, fleet, 1)

    assert body["status"] == "assigned"
    assert body["registrationState"]["assignedHub"] == "hub.example"
    record = await devprov.service().get_registration(fleet.registration_id(1))
    assert record["status"] == "assigned"
    device = await authenticated(devprov, fleet, 1)
    await device.attach_sender(address(fleet, 1))
    device.send(client_frame(Attach("replies", 0, True, source=terminus(0x28, address(fleet, 1)))))
    device.send(client_frame(Flow(0, 100, 0, 100, handle=0, delivery_count=0, link_credit=5)))
    await device.items(1)
    poll = Message(
        correlation_id="p1",
        application_properties={
            "iotdps-operation-type": "iotdps-get-operationstatus",
            "iotdps-operation-id": body["operationId"],
        },
        value="",
    )
    device.send(client_frame(Transfer(1, 0, b"0", 0), poll.encode()))
    disposition, reply = await device.items(2)
    assert isinstance(disposition.performative, Disposition)
    assert json.loads(reply.payload[reply.payload.index(b"{") :])["status"] == "assigned"


async def test_a_wrong_token_fails_sasl(devprov: Running, fleet: Fleet) -> None:
    device = await connect(devprov)
    wrong = fleet.token(fleet.registration_id(2))  # signed for another device
    assert await device.sasl_plain(address(fleet, 3), wrong) == amqp.SASL_AUTH
    assert await device.until_closed() == []
    await not_registered(devprov, fleet, 3)
    assert (await registers(devprov, fleet, 4))["status"] == "assigned"


@pytest.mark.parametrize(
    "init",
    [
        SaslInit("ANONYMOUS"),  # not offered
        SaslInit("PLAIN", b"no separators"),
        SaslInit("PLAIN", b"\x00someone/else\x00SharedAccessSignature sr=x"),
        SaslInit("TPM", b"\x00scope-without-an-id"),
    ],
)
async def test_malformed_sasl_is_refused(devprov: Running, fleet: Fleet, init: SaslInit) -> None:
    device = await connect(devprov)
    device.send(SASL_HEADER + client_frame(init, sasl=True))
    items = await device.until_closed()
    outcome = items[-1]
    assert isinstance(outcome, Frame) and isinstance(outcome.performative, SaslOutcome)
    assert outcome.performative.code == amqp.SASL_AUTH
    assert (await registers(devprov, fleet, 5))["status"] == "assigned"


@pytest.mark.parametrize(
    ("target", "condition"),
    [
        ("0ne00000001/devices/dev-1", amqp.NOT_FOUND),
        ("$cbs", amqp.NOT_FOUND),
        (None, amqp.NOT_FOUND),
        ("{scope}/registrations/someone-else", amqp.UNAUTHORIZED_ACCESS),
    ],
)
async def test_links_to_other_addresses_are_refused(
    devprov: Running, fleet: Fleet, target: str | None, condition: str
) -> None:
    device = await authenticated(devprov, fleet, 6)
    named = target.format(scope=fleet.id_scope) if target else None
    attach, detach = await device.attach_sender(named)  # type: ignore[arg-type]
    assert isinstance(attach.performative, Attach) and attach.performative.target is None
    assert isinstance(detach.performative, Detach) and detach.performative.error is not None
    assert detach.performative.error.condition == condition
    # Its own address is still fine on this connection.
    device.send(client_frame(Detach(1, closed=True)))
    _, flow = await device.attach_sender(address(fleet, 6))
    assert isinstance(flow.performative, Flow) and flow.performative.link_credit


async def test_a_transfer_without_credit_closes_the_connection(
    devprov: Running, fleet: Fleet
) -> None:
    device = await authenticated(devprov, fleet, 7)
    attach = Attach("early", 1, False, target=terminus(0x29, address(fleet, 7)))
    register = Message(
        application_properties={"iotdps-operation-type": "iotdps-register"}, data=b"{}"
    )
    # One write, one TLS record: the transfer arrives before the attach is answered.
    device.send(client_frame(attach) + client_frame(Transfer(1, 0, b"0", 0), register.encode()))
    items = await device.until_closed()
    assert closing_error(items).condition == amqp.TRANSFER_LIMIT_EXCEEDED
    await not_registered(devprov, fleet, 7)
    assert (await registers(devprov, fleet, 8))["status"] == "assigned"


async def test_credit_abuse_closes_the_connection(devprov: Running, fleet: Fleet) -> None:
    device = await authenticated(devprov, fleet, 9)
    _, flow = await device.attach_sender(address(fleet, 9))
    credit = flow.performative.link_credit
    bad = Message(application_properties={"iotdps-operation-type": "iotdps-nothing"}, data=b"")
    for delivery in range(credit + 1):
        device.send(client_frame(Transfer(1, delivery, b"x", 0), bad.encode()))
    items = await device.until_closed()
    assert closing_error(items).condition == amqp.TRANSFER_LIMIT_EXCEEDED


async def test_an_oversize_message_closes_the_connection(devprov: Running, fleet: Fleet) -> None:
    device = await authenticated(devprov, fleet, 10)
    await device.attach_sender(address(fleet, 10))
    chunk = b"x" * 60_000
    device.send(client_frame(Transfer(1, 0, b"0", 0, more=True), chunk))
    device.send(client_frame(Transfer(1, more=True), chunk))
    items = await device.until_closed()
    assert closing_error(items).condition == amqp.MESSAGE_SIZE_EXCEEDED
    await not_registered(devprov, fleet, 10)


@pytest.mark.parametrize(
    ("data", "condition"),
    [
        (b"\x00\x00\x00\x0c\x02\x00\x00\x00\x00\x53\x11\xff", amqp.DECODE_ERROR),
        (b"\x00\x00\x00\x04\x02\x00\x00\x00", amqp.FRAMING_ERROR),
        (b"\xff\xff\xff\xff\x02\x00\x00\x00", amqp.FRAMING_ERROR),
    ],
)
async def test_malformed_frames_close_the_connection(
    devprov: Running, fleet: Fleet, data: bytes, condition: str
) -> None:
    device = await authenticated(devprov, fleet, 11)
    device.send(data)
    assert closing_error(await device.until_closed()).condition == condition
    assert (await registers(devprov, fleet, 12))["status"] == "assigned"


async def test_a_refused_request_carries_the_azure_error(devprov: Running, fleet: Fleet) -> None:
    device = await authenticated(devprov, fleet, 13)
    await device.attach_sender(address(fleet, 13))
    broken = Message(
        correlation_id="c",
        application_properties={"iotdps-operation-type": "iotdps-register"},
        data=b"{not json",
    )
    device.send(client_frame(Transfer(1, 0, b"0", 0), broken.encode()))
    (disposition,) = await device.items(1)
    state = disposition.performative.state
    assert isinstance(state, Described) and state.descriptor == 0x25  # rejected
    condition, description = state.value[0].value[:2]
    assert condition == "com.microsoft:argument-error"
    assert json.loads(description)["errorCode"] == 400001
    await not_registered(devprov, fleet, 13)


async def test_without_sasl_or_certificate_links_are_refused(
    devprov: Running, fleet: Fleet
) -> None:
    device = await connect(devprov)
    device.send(AMQP_HEADER + client_frame(Open("x")) + client_frame(Begin(None, 0, 10, 10)))
    await device.items(3)
    _, detach = await device.attach_sender(address(fleet, 14))
    assert detach.performative.error.condition == amqp.UNAUTHORIZED_ACCESS
    assert "No credentials" in detach.performative.error.description


async def test_a_connection_not_opened_in_time_is_closed(database_url: str, tmp_path: Path) -> None:
    running = await start_devprov(tmp_path / "data", database_url, amqp_open_timeout=0.2)
    try:
        device = await connect(running)
        device.send(SASL_HEADER)
        items = await device.until_closed()
    finally:
        await running.devprov.close()
    assert items[0] == SASL_HEADER  # the mechanisms, then nothing more: closed
    assert len(items) == 3 and isinstance(items[-1].performative, SaslOutcome)


async def test_websocket_subprotocols_choose_the_protocol(devprov: Running, fleet: Fleet) -> None:
    context = ssl.create_default_context(cafile=devprov.ca)
    url = f"https://localhost:{devprov.port}/$iothub/websocket"
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(ssl=context)) as http:
        async with http.ws_connect(url, protocols=("AMQPWSB10",)) as socket:
            assert socket.protocol == "AMQPWSB10"
            await socket.send_bytes(SASL_HEADER[:5])  # a header split across messages
            await socket.send_bytes(SASL_HEADER[5:])
            received = b""
            while len(split(received)) < 2:
                received += await socket.receive_bytes(timeout=WAIT_SECONDS)
            assert split(received)[0] == SASL_HEADER
        async with http.get(url, headers={"Sec-WebSocket-Protocol": "xmpp"}) as response:
            assert response.status == 400
            assert "AMQPWSB10" in (await response.json())["message"]
