"""The sans-I/O AMQP 1.0 server connection (devprov.protocol.amqp).

The conversations are the bytes the unmodified Node SDK sent (tests/protocol/node_amqp.py);
abuse is written with the module's own performative encoders, which the type codec's tests
check against the standard's bytes. Section numbers refer to the AMQP 1.0 standard.
"""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from devprov.protocol import amqp
from devprov.protocol.amqp import (
    Closed,
    Link,
    LinkAttached,
    LinkDetached,
    MessageReceived,
    RemoteProtocolError,
    SaslAnswered,
    SaslStarted,
    ServerConnection,
    State,
)
from devprov.protocol.amqp_frames import (
    AMQP_HEADER,
    SASL_HEADER,
    AmqpError,
    Attach,
    Begin,
    Close,
    Detach,
    Disposition,
    End,
    Flow,
    Message,
    Open,
    SaslChallenge,
    SaslInit,
    SaslMechanisms,
    SaslOutcome,
    SaslResponse,
    Transfer,
    accepted,
    descriptor_code,
    rejected,
    terminus,
    terminus_address,
)
from devprov.protocol.amqp_types import Symbol, UInt
from tests.protocol.amqp_peer import Frame, client_frame, performatives, split
from tests.protocol.node_amqp import SYMMETRIC_KEY, TPM, X509

ADDRESS = "0ne00000001/registrations/dev-1"


def feed(connection: ServerConnection, data: bytes) -> list[amqp.Event]:
    return connection.receive_data(data)


def refused(connection: ServerConnection, data: bytes, condition: str) -> list[Any]:
    """The peer's bytes broke a rule: the error names `condition`, the connection is closed,
    and what it queued is returned (decoded)."""
    with pytest.raises(RemoteProtocolError) as caught:
        connection.receive_data(data)
    assert caught.value.condition == condition, caught.value
    assert connection.state is State.CLOSED
    return split(connection.data_to_send())


def closing_error(items: list[Any]) -> AmqpError | None:
    last = items[-1]
    assert isinstance(last, Frame) and isinstance(last.performative, Close), items
    return last.performative.error


def opened(**options: Any) -> ServerConnection:
    """A connection past SASL-less headers, open and begun, output drained."""
    connection = ServerConnection(mechanisms=("PLAIN",), **options)
    feed(connection, AMQP_HEADER + client_frame(Open("peer")))
    feed(connection, client_frame(Begin(None, 0, 2048, 0xFFFFFFFF)))
    connection.data_to_send()
    return connection


def attach_sender(connection: ServerConnection, handle: int = 1) -> Link:
    """The peer attaches a link it sends on; it is accepted (credit granted)."""
    attach = Attach(
        f"sender-{handle}", handle, False, source=terminus(0x28, None),
        target=terminus(0x29, ADDRESS), initial_delivery_count=0,
    )  # fmt: skip
    (event,) = feed(connection, client_frame(attach))
    assert isinstance(event, LinkAttached)
    connection.accept_link(event.link)
    connection.data_to_send()
    return event.link


def attach_receiver(connection: ServerConnection, handle: int = 0, credit: int = 10) -> Link:
    """The peer attaches a link it receives on, accepted, and gives it credit."""
    attach = Attach(
        f"receiver-{handle}", handle, True, source=terminus(0x28, ADDRESS),
        target=terminus(0x29, None),
    )  # fmt: skip
    (event,) = feed(connection, client_frame(attach))
    assert isinstance(event, LinkAttached)
    connection.accept_link(event.link)
    flow = Flow(0, 2048, 0, 0xFFFFFFFF, handle=handle, delivery_count=0, link_credit=credit)
    assert feed(connection, client_frame(flow)) == []
    connection.data_to_send()
    return event.link


def transfer(handle: int, delivery_id: int | None, payload: bytes, **fields: Any) -> bytes:
    return client_frame(Transfer(handle, delivery_id, b"t", 0, **fields), payload)


REGISTER = Message(
    correlation_id="c-1",
    application_properties={"iotdps-operation-type": "iotdps-register"},
    data=b'{"registrationId":"dev-1"}',
).encode()


# The Node SDK's conversations --------------------------------------------------------------


def test_symmetric_key_conversation_of_the_node_sdk() -> None:
    connection = ServerConnection(mechanisms=("TPM", "PLAIN"), container_id="devprov-dps")
    chunks = iter(SYMMETRIC_KEY)

    assert feed(connection, next(chunks)) == []
    header, mechanisms = split(connection.data_to_send())
    assert header == SASL_HEADER
    assert isinstance(mechanisms, Frame) and mechanisms.kind == 1
    assert mechanisms.performative == SaslMechanisms(("TPM", "PLAIN"))

    (started,) = feed(connection, next(chunks))
    assert isinstance(started, SaslStarted)
    assert started.mechanism == "PLAIN" and started.hostname == "localhost"
    _, user, password = started.initial_response.split(b"\x00")
    assert user.endswith(b"/registrations/amqp-slow-1")
    assert password.startswith(b"SharedAccessSignature sr=")
    connection.sasl_outcome(amqp.SASL_OK)
    assert performatives(connection.data_to_send()) == [SaslOutcome(0)]  # and nothing else

    assert feed(connection, next(chunks)) == []
    assert connection.data_to_send() == AMQP_HEADER
    assert feed(connection, next(chunks)) == []
    (server_open,) = performatives(connection.data_to_send())
    assert server_open == Open("devprov-dps", max_frame_size=65536, channel_max=0)
    assert connection.state is State.OPEN
    assert feed(connection, next(chunks)) == []
    (begin,) = performatives(connection.data_to_send())
    assert isinstance(begin, Begin) and begin.remote_channel == 0 and begin.incoming_window > 0

    (attached,) = feed(connection, next(chunks))
    assert isinstance(attached, LinkAttached)
    replies = attached.link
    assert not replies.receiving
    assert (replies.address or "").endswith("/registrations/amqp-slow-1")
    assert replies.properties[Symbol("com.microsoft:api-version")] == "2019-03-31"
    connection.accept_link(replies)
    (answer,) = performatives(connection.data_to_send())
    assert isinstance(answer, Attach) and answer.role is False and answer.handle == 0
    assert terminus_address(answer.source) == replies.address
    assert answer.initial_delivery_count == 0
    assert feed(connection, next(chunks)) == []  # its credit
    assert replies.credit == 1000

    (attached,) = feed(connection, next(chunks))
    assert isinstance(attached, LinkAttached)
    requests = attached.link
    assert requests.receiving and requests.address == replies.address
    connection.accept_link(requests)
    answer, flow = performatives(connection.data_to_send())
    assert isinstance(answer, Attach) and answer.role is True
    assert isinstance(flow, Flow) and flow.handle == 1 and flow.link_credit == 8
    assert flow.delivery_count == 0 and flow.next_incoming_id == 0

    (received,) = feed(connection, next(chunks))
    assert isinstance(received, MessageReceived) and received.link is requests
    message = received.message
    assert message.application_properties == {
        "iotdps-operation-type": "iotdps-register",
        "iotdps-forceRegistration": False,
    }
    assert isinstance(message.correlation_id, str)
    body = json.loads(message.data or b"")
    assert body["registrationId"] == "amqp-slow-1" and body["payload"]["modelId"]
    connection.settle(requests, received.delivery_id, accepted())
    reply = Message(correlation_id=message.correlation_id, data=b'{"status":"assigning"}')
    assert connection.send_message(replies, reply)
    disposition, sent = split(connection.data_to_send())
    assert isinstance(disposition, Frame)
    assert disposition.performative == Disposition(True, 0, settled=True, state=accepted())
    assert isinstance(sent, Frame) and isinstance(sent.performative, Transfer)
    assert sent.performative.handle == 0 and sent.performative.settled
    assert sent.payload == reply.encode()
    assert replies.credit == 999

    (poll,) = feed(connection, next(chunks))
    assert isinstance(poll, MessageReceived)
    assert poll.message.application_properties["iotdps-operation-type"] == (
        "iotdps-get-operationstatus"
    )
    assert poll.message.value == "" and poll.message.data is None

    for handle in (1, 0):
        (detached,) = feed(connection, next(chunks))
        assert isinstance(detached, LinkDetached) and detached.link.handle == handle
        assert performatives(connection.data_to_send()) == [Detach(handle, closed=True)]
    assert connection.send_message(replies, reply) is False  # gone
    assert feed(connection, next(chunks)) == []
    assert performatives(connection.data_to_send()) == [End()]
    assert feed(connection, next(chunks)) == [Closed(None)]
    assert performatives(connection.data_to_send()) == [Close()]
    assert connection.state.value == "closed"  # (mypy narrowed the state to OPEN above)


def test_tpm_sasl_exchange_of_the_node_sdk() -> None:
    connection = ServerConnection(mechanisms=("TPM", "PLAIN"))
    feed(connection, TPM[0])
    connection.data_to_send()
    (started,) = feed(connection, TPM[1])
    assert isinstance(started, SaslStarted) and started.mechanism == "TPM"
    assert started.initial_response.startswith(b"\x00" + b"0ne")
    connection.sasl_challenge(b"\x00")
    assert performatives(connection.data_to_send()) == [SaslChallenge(b"\x00")]
    (srk,) = feed(connection, TPM[2])
    assert isinstance(srk, SaslAnswered) and srk.response[:3] == b"\x00\x01\x1a"
    connection.sasl_challenge(b"\x80" + b"first half")
    (ack,) = feed(connection, TPM[3])
    assert ack == SaslAnswered(b"\x00")
    connection.sasl_challenge(b"\xc1" + b"second half")
    (token,) = feed(connection, TPM[4])
    assert isinstance(token, SaslAnswered)
    assert token.response.startswith(b"\x00SharedAccessSignature sr=")
    connection.sasl_outcome(amqp.SASL_OK)
    assert connection.state is State.AWAIT_AMQP_HEADER


def test_x509_devices_skip_sasl() -> None:
    connection = ServerConnection(mechanisms=("TPM", "PLAIN"))
    events: list[amqp.Event] = []
    for chunk in X509[:6]:
        events += feed(connection, chunk)
        for event in events:
            if isinstance(event, LinkAttached):
                connection.accept_link(event.link)
    assert connection.data_to_send().startswith(AMQP_HEADER)
    assert [type(event) for event in events] == [LinkAttached, LinkAttached]
    assert connection.sasl_mechanism is None


# SASL --------------------------------------------------------------------------------------


def test_input_is_held_while_the_application_decides() -> None:
    connection = ServerConnection(mechanisms=("PLAIN",))
    init = client_frame(SaslInit("PLAIN", b"\x00user\x00pass"), sasl=True)
    pipelined = SASL_HEADER + init + AMQP_HEADER + client_frame(Open("peer"))
    assert [type(event) for event in feed(connection, pipelined)] == [SaslStarted]
    connection.data_to_send()
    connection.sasl_outcome(amqp.SASL_OK)
    assert performatives(connection.data_to_send()) == [SaslOutcome(0)]
    assert feed(connection, b"") == []
    header, server_open = split(connection.data_to_send())
    assert header == AMQP_HEADER and isinstance(server_open, Frame)
    assert connection.state is State.OPEN


def test_a_failed_outcome_ends_the_connection() -> None:
    connection = ServerConnection(mechanisms=("PLAIN",))
    feed(connection, SASL_HEADER + client_frame(SaslInit("PLAIN", b"\x00u\x00p"), sasl=True))
    connection.data_to_send()
    connection.sasl_outcome(amqp.SASL_AUTH)
    assert performatives(connection.data_to_send()) == [SaslOutcome(1)]
    assert connection.state is State.CLOSED


def test_a_mechanism_not_offered_is_refused() -> None:
    connection = ServerConnection(mechanisms=("PLAIN",))
    feed(connection, SASL_HEADER)
    connection.data_to_send()
    items = refused(
        connection,
        client_frame(SaslInit("ANONYMOUS"), sasl=True),
        amqp.UNAUTHORIZED_ACCESS,
    )
    assert items == [Frame(1, 0, SaslOutcome(amqp.SASL_AUTH))]


@pytest.mark.parametrize(
    "data",
    [
        client_frame(Open("peer")),  # an AMQP frame during SASL
        client_frame(SaslResponse(b"x"), sasl=True),  # a response to no challenge
        b"\x00\x00\x00\x08\x02\x01\x00\x00",  # an empty SASL frame
    ],
)
def test_sasl_out_of_turn_gets_a_failed_outcome(data: bytes) -> None:
    connection = ServerConnection(mechanisms=("PLAIN",))
    feed(connection, SASL_HEADER)
    connection.data_to_send()
    with pytest.raises(RemoteProtocolError):
        feed(connection, data)
    outcome = split(connection.data_to_send())[-1]
    assert isinstance(outcome, Frame) and isinstance(outcome.performative, SaslOutcome)
    assert outcome.performative.code != amqp.SASL_OK
    assert connection.state is State.CLOSED


def test_sasl_steps_out_of_turn_are_our_own_errors() -> None:
    connection = ServerConnection(mechanisms=("PLAIN",))
    with pytest.raises(amqp.LocalProtocolError):
        connection.sasl_outcome(amqp.SASL_OK)


# Headers and frames ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("mechanisms", "data", "answer"),
    [
        (("PLAIN",), b"GET / HTTP/1.1\r\n", SASL_HEADER),
        ((), SASL_HEADER, AMQP_HEADER),  # SASL is not offered
        (("PLAIN",), b"AMQP\x02\x01\x00\x00", SASL_HEADER),  # TLS inside TLS
        (("PLAIN",), b"AMQP\x00\x02\x00\x00", SASL_HEADER),  # AMQP 2.0
    ],
)
def test_a_header_we_do_not_speak_gets_ours(
    mechanisms: tuple[str, ...], data: bytes, answer: bytes
) -> None:
    connection = ServerConnection(mechanisms=mechanisms)
    assert refused(connection, data, amqp.FRAMING_ERROR) == [answer]


def test_before_the_open_an_error_is_an_open_then_a_close() -> None:
    connection = ServerConnection()
    feed(connection, AMQP_HEADER)
    connection.data_to_send()
    items = refused(connection, client_frame(Begin(None, 0, 1, 1)), amqp.FRAMING_ERROR)
    assert isinstance(items[0], Frame) and isinstance(items[0].performative, Open)
    assert closing_error(items) is not None


@pytest.mark.parametrize(
    ("data", "condition"),
    [
        (b"\x00\x00\x00\x04\x02\x00\x00\x00", amqp.FRAMING_ERROR),  # size below the header
        (b"\x00\x00\x00\x10\x01\x00\x00\x00" + bytes(8), amqp.FRAMING_ERROR),  # doff 1
        (b"\x00\x00\x00\x08\x03\x00\x00\x00", amqp.FRAMING_ERROR),  # doff past the frame
        (b"\x7f\xff\xff\xff\x02\x00\x00\x00", amqp.FRAMING_ERROR),  # 2 GB announced
        (client_frame(Open("p"), sasl=True), amqp.FRAMING_ERROR),  # a SASL frame
        (b"\x00\x00\x00\x0b\x02\x00\x00\x00\x00\x53\xff", amqp.DECODE_ERROR),
        # An open without its container-id.
        (b"\x00\x00\x00\x0e\x02\x00\x00\x00\x00\x53\x10\xc0\x01\x00", amqp.INVALID_FIELD),
        (client_frame(Begin(None, 0, 1, 1), channel=1), amqp.FRAMING_ERROR),
        (client_frame(Begin(None, 0, 1, 1)) * 2, amqp.NOT_ALLOWED),
        (client_frame(Flow(0, 1, 0, 1), channel=3), amqp.FRAMING_ERROR),  # no session there
        (client_frame(Attach("l", 8, False)), amqp.FRAMING_ERROR),  # above handle-max 7
        (client_frame(Attach("l", 1, False)) * 2, amqp.HANDLE_IN_USE),
        (client_frame(Flow(0, 1, 0, 1, handle=5)), amqp.UNATTACHED_HANDLE),
        (client_frame(Detach(5)), amqp.UNATTACHED_HANDLE),
        (transfer(5, 0, REGISTER), amqp.UNATTACHED_HANDLE),
        (client_frame(Open("again")), amqp.FRAMING_ERROR),
        (client_frame(SaslOutcome(0)), amqp.DECODE_ERROR),  # a SASL performative as AMQP
    ],
)
def test_malformed_or_unexpected_frames_close_with_the_condition(
    data: bytes, condition: str
) -> None:
    items = refused(opened(), data, condition)
    error = closing_error(items)
    assert error is not None and error.condition == condition


def test_frames_may_arrive_a_byte_at_a_time() -> None:
    connection = ServerConnection(mechanisms=("PLAIN",))
    events: list[amqp.Event] = []
    for chunk in X509:
        for byte in chunk:
            events += feed(connection, bytes([byte]))
            for event in events:
                if isinstance(event, LinkAttached):
                    connection.accept_link(event.link)
    assert [type(event) for event in events][-1] is Closed
    assert sum(isinstance(event, MessageReceived) for event in events) == 1


def test_heartbeats_are_read_and_sent() -> None:
    connection = opened()
    assert feed(connection, b"\x00\x00\x00\x08\x02\x00\x00\x00") == []
    connection.heartbeat()
    assert connection.data_to_send() == b"\x00\x00\x00\x08\x02\x00\x00\x00"


def test_the_peer_idle_time_out_is_known() -> None:
    connection = ServerConnection()
    feed(connection, AMQP_HEADER + client_frame(Open("peer", idle_time_out=60_000)))
    assert connection.remote_idle_timeout_ms == 60_000


def test_close_with_an_error_is_sent() -> None:
    connection = opened()
    connection.close(amqp.RESOURCE_LIMIT_EXCEEDED, "idle")
    (close,) = performatives(connection.data_to_send())
    assert close == Close(AmqpError(amqp.RESOURCE_LIMIT_EXCEEDED, "idle"))
    assert connection.state is State.CLOSED
    with pytest.raises(amqp.LocalProtocolError):
        feed(connection, b"more")


# Links, credit and windows --------------------------------------------------------------------


def test_a_transfer_without_credit_is_refused() -> None:
    connection = opened()
    feed(connection, client_frame(Attach("s", 1, False, initial_delivery_count=0)))
    # Not accepted yet: no credit was granted.
    items = refused(connection, transfer(1, 0, REGISTER), amqp.TRANSFER_LIMIT_EXCEEDED)
    assert closing_error(items) is not None


def test_credit_is_spent_and_topped_up_once_half_is_free() -> None:
    """Credit plus deliveries not yet settled never exceed `link_credit`: that bounds the
    requests a device has in progress."""
    connection = opened(link_credit=4)
    link = attach_sender(connection)
    received = []
    for delivery in range(4):
        (event,) = feed(connection, transfer(1, delivery, REGISTER))
        assert isinstance(event, MessageReceived)
        received.append(event)
    assert link.credit == 0
    refused_connection = opened(link_credit=4)
    attach_sender(refused_connection)
    for delivery in range(4):
        feed(refused_connection, transfer(1, delivery, REGISTER))
    refused(refused_connection, transfer(1, 4, REGISTER), amqp.TRANSFER_LIMIT_EXCEEDED)

    connection.settle(link, received[0].delivery_id, accepted())
    (first,) = performatives(connection.data_to_send())
    assert isinstance(first, Disposition) and descriptor_code(first.state) == 0x24
    connection.settle(link, received[1].delivery_id, rejected(AmqpError("amqp:not-found")))
    second, flow = performatives(connection.data_to_send())
    assert isinstance(second, Disposition) and descriptor_code(second.state) == 0x25
    assert isinstance(flow, Flow) and flow.link_credit == 2 and flow.delivery_count == 4
    assert flow.next_incoming_id == 4
    connection.settle(link, received[2].delivery_id, accepted())
    connection.settle(link, received[3].delivery_id, accepted())
    *_, flow = performatives(connection.data_to_send())
    assert isinstance(flow, Flow) and flow.link_credit == 4


def test_a_presettled_delivery_gets_no_disposition() -> None:
    connection = opened()
    link = attach_sender(connection)
    (event,) = feed(connection, transfer(1, 0, REGISTER, settled=True))
    assert isinstance(event, MessageReceived)
    connection.settle(link, 0, accepted())
    assert connection.data_to_send() == b""


def test_a_delivery_in_several_frames_is_put_together() -> None:
    connection = opened()
    attach_sender(connection)
    assert feed(connection, transfer(1, 0, REGISTER[:10], more=True)) == []
    assert feed(connection, client_frame(Transfer(1, more=True), REGISTER[10:20])) == []
    (event,) = feed(connection, client_frame(Transfer(1), REGISTER[20:]))
    assert isinstance(event, MessageReceived)
    assert event.message.data == b'{"registrationId":"dev-1"}'
    assert event.message.correlation_id == "c-1"


def test_an_aborted_delivery_is_dropped() -> None:
    connection = opened()
    link = attach_sender(connection)
    assert feed(connection, transfer(1, 0, REGISTER[:10], more=True)) == []
    assert feed(connection, client_frame(Transfer(1, aborted=True))) == []
    assert link.credit == 7
    (event,) = feed(connection, transfer(1, 1, REGISTER))
    assert isinstance(event, MessageReceived)


def test_a_message_over_the_limit_is_refused() -> None:
    connection = opened(max_message_size=100)
    attach_sender(connection)
    assert feed(connection, transfer(1, 0, bytes(60), more=True)) == []
    items = refused(
        connection, client_frame(Transfer(1, more=True), bytes(60)), amqp.MESSAGE_SIZE_EXCEEDED
    )
    assert closing_error(items) is not None


def test_transfers_beyond_the_session_window_are_refused() -> None:
    connection = opened(incoming_window=3)
    attach_sender(connection)  # its flow reopened the window: 3 frames
    for _ in range(3):
        feed(connection, transfer(1, 0, b"\x00", more=True))
    refused(connection, transfer(1, 0, b"\x00", more=True), amqp.WINDOW_VIOLATION)


@pytest.mark.parametrize(
    ("payload", "condition"),
    [
        (b"\x00\x53\x75\xff", amqp.DECODE_ERROR),  # not a value
        (b"\x00\x53\x10\x45", amqp.DECODE_ERROR),  # an open is not a message section
        (b"\x00\x53\x74\xc1\x04\x02\x54\x01\x40", amqp.DECODE_ERROR),  # an int property name
    ],
)
def test_a_malformed_message_is_refused(payload: bytes, condition: str) -> None:
    connection = opened()
    attach_sender(connection)
    refused(connection, transfer(1, 0, payload), condition)


def test_a_transfer_on_a_link_we_send_on_is_refused() -> None:
    connection = opened()
    attach_receiver(connection)
    refused(connection, transfer(0, 0, REGISTER), amqp.NOT_ALLOWED)


def test_the_first_transfer_needs_a_delivery_id() -> None:
    connection = opened()
    attach_sender(connection)
    refused(connection, transfer(1, None, REGISTER), amqp.INVALID_FIELD)


def test_replies_are_split_to_the_peer_frame_size_and_wait_for_its_window() -> None:
    connection = ServerConnection()
    feed(connection, AMQP_HEADER + client_frame(Open("peer", max_frame_size=512)))
    feed(connection, client_frame(Begin(None, 0, 2048, 0xFFFFFFFF)))
    connection.data_to_send()
    link = attach_receiver(connection, credit=10)
    feed(connection, client_frame(Flow(0, 2, 0, 0xFFFFFFFF)))  # the peer takes 2 frames
    big = Message(correlation_id="c", data=bytes(900))
    connection.send_message(link, big)
    frames = [item for item in split(connection.data_to_send()) if isinstance(item, Frame)]
    assert len(frames) == 2
    assert all(len(frame.performative.encode()) + len(frame.payload) + 8 <= 512 for frame in frames)  # type: ignore[union-attr]
    assert b"".join(frame.payload for frame in frames) == big.encode()
    connection.send_message(link, big)
    assert connection.data_to_send() == b""  # the window is closed
    feed(connection, client_frame(Flow(2, 10, 0, 0xFFFFFFFF)))
    assert len(split(connection.data_to_send())) == 2


def test_replies_wait_for_credit_and_drain_answers() -> None:
    connection = opened()
    link = attach_receiver(connection, credit=0)
    connection.send_message(link, Message(correlation_id="c", data=b"{}"))
    assert connection.data_to_send() == b""
    feed(connection, client_frame(Flow(0, 10, 0, 10, handle=0, delivery_count=0, link_credit=3)))
    (sent,) = performatives(connection.data_to_send())
    assert isinstance(sent, Transfer)
    drain = Flow(0, 10, 0, 10, handle=0, delivery_count=1, link_credit=2, drain=True)
    feed(connection, client_frame(drain))
    (flow,) = performatives(connection.data_to_send())
    assert isinstance(flow, Flow) and flow.drain and flow.link_credit == 0
    assert flow.delivery_count == 3


def test_echo_asks_for_our_flow() -> None:
    connection = opened()
    attach_receiver(connection)
    feed(connection, client_frame(Flow(0, 10, 0, 10, handle=0, link_credit=5, echo=True)))
    (flow,) = performatives(connection.data_to_send())
    assert isinstance(flow, Flow) and flow.handle == 0 and flow.link_credit == 5


def test_a_refused_link_is_answered_then_detached_with_the_error() -> None:
    connection = opened()
    (event,) = feed(connection, client_frame(Attach("r", 0, True, source=terminus(0x28, "x"))))
    assert isinstance(event, LinkAttached)
    connection.refuse_link(event.link, amqp.NOT_FOUND, "no such node")
    attach, detach = performatives(connection.data_to_send())
    assert isinstance(attach, Attach) and attach.source is None  # our terminus: none
    assert detach == Detach(0, closed=True, error=AmqpError(amqp.NOT_FOUND, "no such node"))
    assert feed(connection, client_frame(Detach(0, closed=True))) == []  # its answer
    assert connection.data_to_send() == b""
    connection.accept_link(event.link)  # too late: nothing happens
    assert connection.data_to_send() == b""
    (again,) = feed(connection, client_frame(Attach("r2", 0, True)))  # the handle is free
    assert isinstance(again, LinkAttached)


def test_a_link_detached_before_we_answered_gets_an_attach_then_a_detach() -> None:
    connection = opened()
    (event,) = feed(connection, client_frame(Attach("s", 1, False)))
    assert isinstance(event, LinkAttached)
    (detached,) = feed(connection, client_frame(Detach(1, closed=True)))
    assert isinstance(detached, LinkDetached)
    attach, detach = performatives(connection.data_to_send())
    assert isinstance(attach, Attach) and attach.target is None
    assert detach == Detach(1, closed=True)
    connection.accept_link(event.link)
    assert connection.data_to_send() == b""


def test_end_drops_the_links() -> None:
    connection = opened()
    link = attach_receiver(connection)
    feed(connection, client_frame(End()))
    assert performatives(connection.data_to_send()) == [End()]
    assert link.detached and connection.links() == []
    assert connection.send_message(link, Message(data=b"{}")) is False
    feed(connection, client_frame(Begin(None, 0, 10, 10)))  # a new session may begin
    (begin,) = performatives(connection.data_to_send())
    assert isinstance(begin, Begin)


def test_disposition_from_a_sender_settles_what_it_sent() -> None:
    connection = opened()
    link = attach_sender(connection)
    feed(connection, transfer(1, 0, REGISTER))
    feed(connection, client_frame(Disposition(False, 0, 2**31, settled=True)))
    connection.settle(link, 0, accepted())
    assert connection.data_to_send() == b""  # settled already: no disposition


def test_sent_messages_need_a_link_we_send_on() -> None:
    connection = opened()
    link = attach_sender(connection)
    with pytest.raises(amqp.LocalProtocolError):
        connection.send_message(link, Message(data=b"{}"))
    receiver = attach_receiver(connection, handle=0)
    with pytest.raises(amqp.LocalProtocolError):
        connection.send_message(receiver, Message(data=object()))  # type: ignore[arg-type]


# Mutational fuzzing of the decoder, driven by what the Node SDK sends ------------------------


class Peer:
    """An application that says yes to everything, so that mutated input goes deep."""

    def __init__(self) -> None:
        self.connection = ServerConnection(
            mechanisms=("TPM", "PLAIN"), max_message_size=4096, incoming_window=64
        )

    def feed(self, data: bytes) -> None:
        for event in self.connection.receive_data(data):
            if isinstance(event, (SaslStarted, SaslAnswered)):
                self.connection.sasl_outcome(amqp.SASL_OK)
                self.connection.data_to_send()
                self.feed(b"")
            elif isinstance(event, LinkAttached):
                self.connection.accept_link(event.link)
            elif isinstance(event, MessageReceived):
                self.connection.settle(event.link, event.delivery_id, accepted())
                for link in self.connection.links():
                    if not link.receiving and link.accepted:
                        self.connection.send_message(link, Message(correlation_id=UInt(1)))
        self.connection.data_to_send()


mutation = st.tuples(
    st.sampled_from(["flip", "set", "insert", "delete", "cut"]),
    st.integers(0, 10_000),
    st.integers(0, 255),
)


@settings(max_examples=600, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    st.sampled_from([SYMMETRIC_KEY, TPM, X509]),
    st.lists(mutation, min_size=1, max_size=6),
    st.integers(1, 400),
)
def test_mutated_node_traffic_only_ever_breaks_the_protocol(
    conversation: list[bytes], mutations: list[tuple[str, int, int]], read_size: int
) -> None:
    """Whatever the bytes, the connection raises nothing but RemoteProtocolError, after which
    it is closed having queued its goodbye."""
    stream = bytearray(b"".join(conversation))
    for operation, where, value in mutations:
        position = where % (len(stream) + 1)
        if operation == "flip" and position < len(stream):
            stream[position] ^= 1 << (value % 8)
        elif operation == "set" and position < len(stream):
            stream[position] = value
        elif operation == "insert":
            stream[position:position] = bytes([value])
        elif operation == "delete":
            del stream[position : position + 1 + value % 8]
        elif operation == "cut":
            del stream[position:]
    peer = Peer()
    try:
        for start in range(0, len(stream), read_size):
            peer.feed(bytes(stream[start : start + read_size]))
    except RemoteProtocolError:
        assert peer.connection.state is State.CLOSED
        return
    except amqp.LocalProtocolError:
        # Only when the peer closed, and then the test fed more.
        assert peer.connection.state is State.CLOSED
