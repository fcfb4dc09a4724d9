"""The sans-I/O MQTT 3.1.1 codec and server connection state machine (devprov.protocol.mqtt).

Byte strings are written out by hand, field by field, the way the Python SDK (paho-mqtt) and the
Node SDK (mqtt.js) put them on the wire; section numbers refer to the MQTT 3.1.1 standard.
"""

from __future__ import annotations

import itertools
import struct
from typing import Any

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from devprov.protocol import mqtt
from devprov.protocol.mqtt import (
    ConnAck,
    Connect,
    Disconnect,
    PingReq,
    PingResp,
    ProtocolError,
    PubAck,
    Publish,
    ServerConnection,
    State,
    SubAck,
    Subscribe,
    UnsubAck,
    Unsubscribe,
)
from tests.protocol.framing import read_packets, split_frame

PACKET_TYPES = (
    Connect, ConnAck, Publish, PubAck, Subscribe, SubAck, Unsubscribe, UnsubAck, PingReq,
    PingResp, Disconnect,
)  # fmt: skip

RESPONSE_FILTER = b"$dps/registrations/res/#"
REGISTER_TOPIC = b"$dps/registrations/PUT/iotdps-register/?$rid=1"
PY_USERNAME = (
    b"0ne00000001/registrations/dev-1/api-version=2019-03-31&ClientVersion="
    b"azure-iot-device-provisioning-py%2F2.14.0%283.11.7%3BLinux%20%231%20SMP%3Bx86_64%29"
)
NODE_USERNAME = (
    b"0ne00000001/registrations/dev-1/api-version=2019-03-31"
    b"&ClientVersion=azure-iot-provisioning-device%2F1.9.1"
)
SAS = (
    b"SharedAccessSignature sr=0ne00000001%2Fregistrations%2Fdev-1"
    b"&sig=3q2%2B7w%3D%3D&se=1700000000&skn=registration"
)


def u16(value: int) -> bytes:
    return struct.pack("!H", value)


def varint(value: int) -> bytes:
    """The remaining length of 2.2.3, written independently of the module under test."""
    out = bytearray()
    while True:
        value, digit = divmod(value, 128)
        out.append(digit | (0x80 if value else 0))
        if not value:
            return bytes(out)


def field(data: bytes) -> bytes:
    return u16(len(data)) + data


def frame(first_byte: int, body: bytes) -> bytes:
    return bytes([first_byte]) + varint(len(body)) + body


# What the clients send: the variable header is "MQTT", level 4, connect flags, keep-alive.
PAHO_CONNECT = frame(
    0x10,
    b"\x00\x04MQTT\x04"
    + b"\xc0"  # user name + password, CleanSession 0 (the Python SDK keeps its session)
    + b"\x00\x3c"  # keep-alive 60 s
    + b"\x00\x05dev-1"
    + field(PY_USERNAME)
    + field(SAS),
)
MQTTJS_CONNECT = frame(
    0x10,
    b"\x00\x04MQTT\x04"
    + b"\xc2"  # user name + password + CleanSession 1
    + b"\x00\xb4"  # keep-alive 180 s (the Node SDK's)
    + b"\x00\x05dev-1"
    + field(NODE_USERNAME)
    + field(SAS),
)
MINIMAL_CONNECT = b"\x10\x11\x00\x04MQTT\x04\x02\x00\x00\x00\x05dev-1"
SUBSCRIBE_RES = b"\x82\x1d\x00\x01" + field(RESPONSE_FILTER) + b"\x01"
PUBLISH_REGISTER_QOS1 = frame(
    0x32, field(REGISTER_TOPIC) + b"\x00\x02" + b'{"registrationId":"dev-1"}'
)
PINGREQ = b"\xc0\x00"
DISCONNECT = b"\xe0\x00"


def decode_frame(data: bytes) -> mqtt.Packet:
    """Decode exactly one whole frame."""
    parsed = split_frame(data)
    assert parsed is not None, "incomplete frame"
    packet_type, flags, body, end = parsed
    assert end == len(data), "more than one frame"
    return mqtt.decode(packet_type, flags, body)


def connecting(**options: Any) -> ServerConnection:
    connection = ServerConnection(**options)
    assert connection.receive_data(MINIMAL_CONNECT) == [Connect("dev-1")]
    assert connection.state is State.CONNECTING
    return connection


def connected(**options: Any) -> ServerConnection:
    connection = connecting(**options)
    assert connection.send(ConnAck(0)) == b"\x20\x02\x00\x00"
    assert connection.state is State.CONNECTED
    return connection


def refused(connection: ServerConnection, data: bytes) -> mqtt.RemoteProtocolError:
    """The peer's bytes broke a rule: a remote protocol error, never a local one."""
    with pytest.raises(mqtt.RemoteProtocolError) as caught:
        connection.receive_data(data)
    return caught.value


# Decoding and encoding each packet type -----------------------------------------------------


def test_connect_as_paho_sends_it() -> None:
    packet = decode_frame(PAHO_CONNECT)

    assert packet == Connect(
        client_id="dev-1",
        username=PY_USERNAME.decode(),
        password=SAS,
        keep_alive=60,
        clean_session=False,
    )
    assert mqtt.encode(packet) == PAHO_CONNECT


def test_connect_as_mqttjs_sends_it() -> None:
    packet = decode_frame(MQTTJS_CONNECT)

    assert packet == Connect(
        client_id="dev-1",
        username=NODE_USERNAME.decode(),
        password=SAS,
        keep_alive=180,
        clean_session=True,
    )
    assert mqtt.encode(packet) == MQTTJS_CONNECT


def test_connect_remaining_length_takes_two_bytes() -> None:
    assert len(PAHO_CONNECT) - 2 > 127
    assert PAHO_CONNECT[1] & 0x80 and not PAHO_CONNECT[2] & 0x80


def test_connect_without_credentials() -> None:
    assert decode_frame(MINIMAL_CONNECT) == Connect("dev-1", keep_alive=0, clean_session=True)
    assert mqtt.encode(Connect("dev-1")) == MINIMAL_CONNECT


def test_connect_with_a_will() -> None:
    body = (
        b"\x00\x04MQTT\x04"
        + b"\x2e"  # will retain + will QoS 1 + will flag + CleanSession
        + b"\x00\x0a"
        + b"\x00\x01c"
        + b"\x00\x04gone"
        + b"\x00\x03bye"
    )
    packet = decode_frame(frame(0x10, body))

    assert packet == Connect(
        "c", keep_alive=10, will_topic="gone", will_message=b"bye", will_qos=1, will_retain=True
    )
    assert mqtt.encode(packet) == frame(0x10, body)


def test_connack() -> None:
    assert decode_frame(b"\x20\x02\x00\x00") == ConnAck(0)
    assert decode_frame(b"\x20\x02\x01\x05") == ConnAck(5, session_present=True)
    assert mqtt.encode(ConnAck(4)) == b"\x20\x02\x00\x04"
    assert mqtt.encode(ConnAck(0, session_present=True)) == b"\x20\x02\x01\x00"


def test_connack_reserved_flags() -> None:
    with pytest.raises(ProtocolError):
        decode_frame(b"\x20\x02\x02\x00")


def test_publish_qos0() -> None:
    data = frame(0x30, field(b"a/b") + b"hello")

    assert decode_frame(data) == Publish("a/b", b"hello")
    assert mqtt.encode(Publish("a/b", b"hello")) == data


def test_publish_qos1_with_retain_and_dup() -> None:
    assert decode_frame(PUBLISH_REGISTER_QOS1) == Publish(
        REGISTER_TOPIC.decode(), b'{"registrationId":"dev-1"}', qos=1, packet_id=2
    )
    data = frame(0x3B, field(b"t") + b"\x12\x34" + b"")
    packet = Publish("t", b"", qos=1, packet_id=0x1234, retain=True, dup=True)
    assert decode_frame(data) == packet
    assert mqtt.encode(packet) == data


def test_publish_qos1_packet_id_zero() -> None:
    with pytest.raises(ProtocolError):
        decode_frame(frame(0x32, field(b"t") + b"\x00\x00"))


def test_puback() -> None:
    assert decode_frame(b"\x40\x02\x00\x07") == PubAck(7)
    assert mqtt.encode(PubAck(0xFFFF)) == b"\x40\x02\xff\xff"


def test_subscribe() -> None:
    assert decode_frame(SUBSCRIBE_RES) == Subscribe(1, ((RESPONSE_FILTER.decode(), 1),))
    assert mqtt.encode(Subscribe(1, ((RESPONSE_FILTER.decode(), 1),))) == SUBSCRIBE_RES


def test_subscribe_with_several_filters() -> None:
    data = frame(0x82, b"\x00\x09" + field(b"a/#") + b"\x02" + field(b"b/+") + b"\x00")
    assert decode_frame(data) == Subscribe(9, (("a/#", 2), ("b/+", 0)))


@pytest.mark.parametrize(
    "body",
    [
        b"\x00\x01",  # no topic filter
        b"\x00\x00" + field(b"a") + b"\x01",  # packet identifier 0
        b"\x00\x01" + field(b"a") + b"\x03",  # QoS 3
        b"\x00\x01" + field(b"a") + b"\x41",  # reserved bits of the options byte
        b"\x00\x01" + field(b"") + b"\x01",  # empty filter
        b"\x00\x01" + field(b"a"),  # QoS byte missing
    ],
)
def test_bad_subscribe(body: bytes) -> None:
    with pytest.raises(ProtocolError):
        decode_frame(frame(0x82, body))


def test_suback() -> None:
    assert decode_frame(b"\x90\x04\x00\x01\x01\x80") == SubAck(1, (1, 0x80))
    assert mqtt.encode(SubAck(1, (1, 0x80))) == b"\x90\x04\x00\x01\x01\x80"


def test_unsubscribe() -> None:
    data = b"\xa2\x1c\x00\x03" + field(RESPONSE_FILTER)
    assert decode_frame(data) == Unsubscribe(3, (RESPONSE_FILTER.decode(),))
    assert mqtt.encode(Unsubscribe(3, (RESPONSE_FILTER.decode(),))) == data
    with pytest.raises(ProtocolError):
        decode_frame(b"\xa2\x02\x00\x03")  # no topic filter


def test_unsuback() -> None:
    assert decode_frame(b"\xb0\x02\x00\x03") == UnsubAck(3)
    assert mqtt.encode(UnsubAck(3)) == b"\xb0\x02\x00\x03"


def test_pingreq_pingresp_disconnect() -> None:
    assert decode_frame(PINGREQ) == PingReq()
    assert decode_frame(b"\xd0\x00") == PingResp()
    assert decode_frame(DISCONNECT) == Disconnect()
    assert mqtt.encode(PingReq()) == PINGREQ
    assert mqtt.encode(PingResp()) == b"\xd0\x00"
    assert mqtt.encode(Disconnect()) == DISCONNECT


def test_stray_bytes_after_a_packet() -> None:
    with pytest.raises(ProtocolError):
        decode_frame(b"\xc0\x01\x00")
    with pytest.raises(ProtocolError):
        decode_frame(b"\x40\x03\x00\x01\x00")


def test_field_running_past_the_body() -> None:
    with pytest.raises(ProtocolError):
        decode_frame(frame(0x30, b"\x00\x09abc"))


@pytest.mark.parametrize(
    ("first_byte", "body"),
    [
        (0x83, b"\x00\x01" + field(b"a") + b"\x01"),  # SUBSCRIBE must be 0x2
        (0x80, b"\x00\x01" + field(b"a") + b"\x01"),
        (0xA0, b"\x00\x01" + field(b"a")),  # UNSUBSCRIBE must be 0x2
        (0xC1, b""),  # PINGREQ must be 0
        (0xE2, b""),  # DISCONNECT must be 0
        (0x41, b"\x00\x01"),  # PUBACK must be 0
        (0x12, MINIMAL_CONNECT[2:]),  # CONNECT must be 0
    ],
)
def test_reserved_flags(first_byte: int, body: bytes) -> None:
    with pytest.raises(ProtocolError):
        decode_frame(frame(first_byte, body))


@pytest.mark.parametrize(
    "first_byte",
    [0x00, 0x50, 0x62, 0x70, 0xF0],  # reserved 0, PUBREC, PUBREL, PUBCOMP, reserved 15
)
def test_unsupported_packet_types(first_byte: int) -> None:
    with pytest.raises(ProtocolError):
        decode_frame(frame(first_byte, b"\x00\x01"))


@pytest.mark.parametrize(
    "connect_flags",
    [
        0x01,  # reserved flag
        0x18,  # will QoS 3 (with the will flag clear)
        0x08,  # will QoS without a will
        0x20,  # will retain without a will
        0x40,  # password without user name
    ],
)
def test_bad_connect_flags(connect_flags: int) -> None:
    body = b"\x00\x04MQTT\x04" + bytes([connect_flags]) + b"\x00\x00\x00\x01c" + b"\x00\x01p"
    with pytest.raises(ProtocolError):
        decode_frame(frame(0x10, body))


def test_bad_protocol_name() -> None:
    body = b"\x00\x06MQIsdp\x03\x02\x00\x00\x00\x01c"
    with pytest.raises(ProtocolError):
        decode_frame(frame(0x10, body))


@pytest.mark.parametrize(
    "raw",
    [
        b"a\x00b",  # U+0000 (1.5.3)
        b"\xff",  # not UTF-8
        b"\xc3",  # truncated sequence
        b"\xc0\x80",  # overlong U+0000
        b"\xed\xa0\x80",  # an encoded surrogate (U+D800)
    ],
)
def test_strings_must_be_well_formed_utf8_without_nul(raw: bytes) -> None:
    with pytest.raises(ProtocolError):
        decode_frame(frame(0x30, field(raw)))  # topic name
    with pytest.raises(ProtocolError):
        decode_frame(b"\x10" + varint(12 + len(raw)) + b"\x00\x04MQTT\x04\x02\x00\x00" + field(raw))
    with pytest.raises(ProtocolError):
        decode_frame(frame(0x82, b"\x00\x01" + field(raw) + b"\x01"))


@pytest.mark.parametrize("topic", [b"a/+/b", b"a/#", b"+", b"#", b""])
def test_publish_topic_names_have_no_wildcards(topic: bytes) -> None:
    with pytest.raises(ProtocolError):
        decode_frame(frame(0x30, field(topic) + b"x"))


def test_publish_qos3() -> None:
    with pytest.raises(ProtocolError):
        decode_frame(frame(0x36, field(b"t") + b"\x00\x01"))


# The server connection state machine --------------------------------------------------------


def test_first_packet_must_be_connect() -> None:
    for data in (PINGREQ, SUBSCRIBE_RES, PUBLISH_REGISTER_QOS1, DISCONNECT):
        error = refused(ServerConnection(), data)
        assert error.connack_code is None


def test_connect_then_connack_accepted() -> None:
    connection = ServerConnection()
    assert ServerConnection().state is State.AWAIT_CONNECT

    (packet,) = connection.receive_data(PAHO_CONNECT)

    assert isinstance(packet, Connect)
    assert connection.state is State.CONNECTING
    assert connection.keep_alive == 60
    assert connection.send(ConnAck(0)) == b"\x20\x02\x00\x00"
    assert connection.state is State.CONNECTED  # type: ignore[comparison-overlap]


@pytest.mark.parametrize("code", [1, 2, 3, 4, 5])
def test_refusing_connack_closes(code: int) -> None:
    connection = connecting()

    assert connection.send(ConnAck(code)) == bytes([0x20, 0x02, 0x00, code])
    assert connection.state is State.CLOSED
    with pytest.raises(ProtocolError):
        connection.send(PingResp())
    with pytest.raises(ProtocolError):
        connection.receive_data(PINGREQ)


def test_second_connect_is_a_protocol_error() -> None:
    error = refused(connecting(), MINIMAL_CONNECT)
    assert error.connack_code is None
    refused(connected(), MINIMAL_CONNECT)


def test_packets_before_connack_are_returned_while_connecting() -> None:
    connection = ServerConnection()

    packets = connection.receive_data(MINIMAL_CONNECT + SUBSCRIBE_RES + PUBLISH_REGISTER_QOS1)

    assert [type(p) for p in packets] == [Connect, Subscribe, Publish]
    assert connection.state is State.CONNECTING
    assert connection.receive_data(PINGREQ) == [PingReq()]
    assert connection.state is State.CONNECTING


@pytest.mark.parametrize(
    "packet",
    [
        SubAck(1, (1,)),
        UnsubAck(1),
        PingResp(),
        PubAck(1),
        Publish("t", b"", 0),
        Publish("t", b"", 1, 1),
        ConnAck(0, session_present=True),
    ],
)
def test_only_connack_may_be_sent_before_accepting(packet: mqtt.Packet) -> None:
    fresh = ServerConnection()
    with pytest.raises(ProtocolError):
        fresh.send(packet)
    if not isinstance(packet, ConnAck):
        with pytest.raises(ProtocolError):
            connecting().send(packet)


def test_connack_before_connect_or_twice() -> None:
    with pytest.raises(ProtocolError):
        ServerConnection().send(ConnAck(0))
    with pytest.raises(ProtocolError):
        connected().send(ConnAck(0))


@pytest.mark.parametrize(
    "data",
    [
        b"\x20\x02\x00\x00",  # CONNACK
        b"\x90\x03\x00\x01\x01",  # SUBACK
        b"\xb0\x02\x00\x01",  # UNSUBACK
        b"\xd0\x00",  # PINGRESP
    ],
)
def test_server_packets_from_a_client(data: bytes) -> None:
    refused(connecting(), data)
    refused(connected(), data)


def test_qos2_publish_is_refused() -> None:
    refused(connected(), frame(0x34, field(b"t") + b"\x00\x01x"))


def test_qos3_publish_is_refused() -> None:
    refused(connected(), frame(0x36, field(b"t") + b"\x00\x01x"))


def test_subscribe_with_wrong_reserved_flags() -> None:
    refused(connected(), b"\x80" + SUBSCRIBE_RES[1:])


def test_remaining_length_of_five_bytes() -> None:
    connection = connected()
    with pytest.raises(ProtocolError):
        connection.receive_data(b"\x30\x80\x80\x80\x80")
    # Also when the fifth byte arrives on its own.
    connection = connected()
    assert connection.receive_data(b"\x30\x80\x80\x80") == []
    with pytest.raises(ProtocolError):
        connection.receive_data(b"\x80\x01")


def test_remaining_length_of_four_bytes_is_allowed() -> None:
    # Zero written in four bytes (2.2.3 does not require the shortest form).
    assert connected().receive_data(b"\xc0\x80\x80\x80\x00") == [PingReq()]


def test_packet_above_max_packet_bytes_is_refused_from_its_header() -> None:
    connection = connected(max_packet_bytes=100)
    assert connection.receive_data(frame(0x30, field(b"t") + b"x" * 95)) == [
        Publish("t", b"x" * 95)
    ]  # 100 bytes with its header
    with pytest.raises(ProtocolError):
        connection.receive_data(b"\x30" + varint(200_000_000))  # no body sent at all


def test_connect_above_max_packet_bytes() -> None:
    with pytest.raises(ProtocolError):
        ServerConnection(max_packet_bytes=64).receive_data(PAHO_CONNECT[:3])


STREAM = MQTTJS_CONNECT + SUBSCRIBE_RES + PUBLISH_REGISTER_QOS1 + b"\x40\x02\x00\x01" + PINGREQ
STREAM_PACKETS = [type(p) for p in read_packets(STREAM)[0]]


def test_bytes_split_at_every_offset_give_the_same_packets() -> None:
    whole = ServerConnection().receive_data(STREAM)
    assert [type(p) for p in whole] == STREAM_PACKETS
    for offset in range(len(STREAM) + 1):
        connection = ServerConnection()
        packets = connection.receive_data(STREAM[:offset]) + connection.receive_data(
            STREAM[offset:]
        )
        assert packets == whole, offset


def test_bytes_one_at_a_time() -> None:
    connection = ServerConnection()
    packets = [p for i in range(len(STREAM)) for p in connection.receive_data(STREAM[i : i + 1])]
    assert packets == ServerConnection().receive_data(STREAM)


def test_several_packets_in_one_chunk() -> None:
    connection = connected()
    packets = connection.receive_data(PINGREQ * 3 + SUBSCRIBE_RES + PINGREQ)
    assert packets == [PingReq()] * 3 + [Subscribe(1, ((RESPONSE_FILTER.decode(), 1),)), PingReq()]


@pytest.mark.parametrize(("keep_alive", "timeout"), [(60, 90.0), (1, 1.5), (180, 270.0), (0, None)])
def test_keep_alive_timeout(keep_alive: int, timeout: float | None) -> None:
    connection = ServerConnection()
    connection.receive_data(mqtt.encode(Connect("c", keep_alive=keep_alive)))
    assert connection.keep_alive == keep_alive
    assert connection.keep_alive_timeout == timeout


def test_keep_alive_timeout_before_connect() -> None:
    assert ServerConnection().keep_alive_timeout is None


def test_protocol_level_3_gets_connack_1() -> None:
    connection = ServerConnection()
    body = b"\x00\x04MQTT\x03\x02\x00\x3c\x00\x05dev-1"

    error = refused(connection, frame(0x10, body))

    assert error.connack_code == mqtt.UNACCEPTABLE_PROTOCOL_VERSION
    assert connection.state is State.CONNECTING
    assert connection.send(ConnAck(error.connack_code)) == b"\x20\x02\x00\x01"
    assert connection.state is State.CLOSED  # type: ignore[comparison-overlap]  # send() changed it


def test_protocol_level_5_gets_connack_1() -> None:
    body = b"\x00\x04MQTT\x05\x02\x00\x3c\x00\x00\x05dev-1"
    assert refused(ServerConnection(), frame(0x10, body)).connack_code == 1


def test_second_connect_with_bad_level_asks_for_no_connack() -> None:
    connection = connecting()
    error = refused(connection, frame(0x10, b"\x00\x04MQTT\x03\x02\x00\x3c\x00\x01c"))
    assert error.connack_code is None


def test_other_connect_errors_ask_for_no_connack() -> None:
    body = b"\x00\x04MQTT\x04\x01\x00\x00\x00\x01c"  # reserved flag
    connection = ServerConnection()
    assert refused(connection, frame(0x10, body)).connack_code is None
    assert connection.state is State.AWAIT_CONNECT


def sent_publish(connection: ServerConnection) -> Publish:
    packet = decode_frame(connection.send(Publish("$dps/registrations/res/200/?$rid=1", b"{}", 1)))
    assert isinstance(packet, Publish)
    assert packet.qos == 1
    assert packet.packet_id is not None
    return packet


def test_inflight_cap() -> None:
    connection = connected(max_inflight=3)
    ids = [sent_publish(connection).packet_id for _ in range(3)]
    assert ids == [1, 2, 3]

    with pytest.raises(ProtocolError):
        connection.send(Publish("t", b"", 1))

    assert connection.receive_data(b"\x40\x02\x00\x02") == [PubAck(2)]
    assert sent_publish(connection).packet_id == 4
    with pytest.raises(ProtocolError):
        connection.send(Publish("t", b"", 1))


def test_qos0_publishes_are_not_counted_in_flight() -> None:
    connection = connected(max_inflight=1)
    for _ in range(5):
        assert decode_frame(connection.send(Publish("t", b"x"))) == Publish("t", b"x")
    sent_publish(connection)


def test_unknown_puback_is_ignored() -> None:
    connection = connected(max_inflight=1)
    sent_publish(connection)
    assert connection.receive_data(b"\x40\x02\x00\x09") == [PubAck(9)]
    with pytest.raises(ProtocolError):
        connection.send(Publish("t", b"", 1))


def test_packet_ids_wrap_to_1_and_skip_ids_in_flight() -> None:
    connection = connected(max_inflight=4)
    assert sent_publish(connection).packet_id == 1
    assert sent_publish(connection).packet_id == 2  # 1 and 2 stay unacknowledged
    for expected in range(3, 0x10000):
        packet_id = sent_publish(connection).packet_id
        assert packet_id == expected
        connection.receive_data(b"\x40\x02" + u16(packet_id))
    assert sent_publish(connection).packet_id == 3  # 65535 -> 1, but 1 and 2 are in flight
    connection.receive_data(b"\x40\x02\x00\x01")
    assert sent_publish(connection).packet_id == 4


def test_send_keeps_topic_and_payload_of_qos1_publish() -> None:
    packet = sent_publish(connected())
    assert packet.topic == "$dps/registrations/res/200/?$rid=1"
    assert packet.payload == b"{}"


def test_utf8_errors_through_the_connection() -> None:
    refused(connected(), frame(0x30, field(b"a\x00") + b"x"))
    refused(connected(), frame(0x30, field(b"\xfe\xff") + b"x"))
    refused(ServerConnection(), b"\x10\x0f\x00\x04MQTT\x04\x02\x00\x00\x00\x03a\x00b")


def test_wildcard_topic_through_the_connection() -> None:
    refused(connected(), frame(0x30, field(b"$dps/registrations/#") + b"x"))


def test_disconnect_closes_and_later_data_is_refused() -> None:
    connection = connected()

    packets = connection.receive_data(PINGREQ + DISCONNECT + PINGREQ)

    assert packets == [PingReq(), Disconnect()]  # nothing after DISCONNECT is read
    assert connection.state is State.CLOSED
    with pytest.raises(ProtocolError):
        connection.receive_data(PINGREQ)
    with pytest.raises(ProtocolError):
        connection.send(PingResp())


def test_disconnect_while_connecting() -> None:
    connection = connecting()
    assert connection.receive_data(DISCONNECT) == [Disconnect()]
    assert connection.state is State.CLOSED
    with pytest.raises(ProtocolError):
        connection.send(ConnAck(0))


def test_close() -> None:
    connection = connected()
    connection.close()
    assert connection.state is State.CLOSED
    with pytest.raises(ProtocolError):
        connection.receive_data(PINGREQ)


# Property tests ----------------------------------------------------------------------------

mqtt_text = st.text(st.characters(codec="utf-8", exclude_characters="\x00"), max_size=20)
non_empty_text = mqtt_text.filter(bool)
topic_names = st.text(
    st.characters(codec="utf-8", exclude_characters="\x00+#"),
    min_size=1,
    max_size=20,
)
packet_ids = st.integers(1, 0xFFFF)
payloads = st.binary(max_size=64)


@st.composite
def connects(draw: st.DrawFn) -> Connect:
    username = draw(st.none() | mqtt_text)
    will = draw(st.booleans())
    return Connect(
        client_id=draw(mqtt_text),
        username=username,
        password=draw(st.none() | payloads) if username is not None else None,
        keep_alive=draw(st.integers(0, 0xFFFF)),
        clean_session=draw(st.booleans()),
        will_topic=draw(mqtt_text) if will else None,
        will_message=draw(payloads) if will else None,
        will_qos=draw(st.integers(0, 2)) if will else 0,
        will_retain=draw(st.booleans()) if will else False,
    )


@st.composite
def publishes(draw: st.DrawFn, max_qos: int = 2) -> Publish:
    qos = draw(st.integers(0, max_qos))
    return Publish(
        topic=draw(topic_names),
        payload=draw(payloads),
        qos=qos,
        packet_id=draw(packet_ids) if qos else None,
        retain=draw(st.booleans()),
        dup=draw(st.booleans()),
    )


subscribes = st.builds(
    Subscribe,
    packet_ids,
    st.lists(st.tuples(non_empty_text, st.integers(0, 2)), min_size=1, max_size=4).map(tuple),
)
unsubscribes = st.builds(
    Unsubscribe, packet_ids, st.lists(non_empty_text, min_size=1, max_size=4).map(tuple)
)
client_packets = st.one_of(
    publishes(max_qos=1),
    st.builds(PubAck, packet_ids),
    subscribes,
    unsubscribes,
    st.just(PingReq()),
)
any_packets = st.one_of(
    connects(),
    st.builds(ConnAck, st.integers(0, 5), st.booleans()),
    publishes(),
    st.builds(PubAck, packet_ids),
    subscribes,
    st.builds(
        SubAck,
        packet_ids,
        st.lists(st.sampled_from([0, 1, 2, 0x80]), min_size=1, max_size=4).map(tuple),
    ),
    unsubscribes,
    st.builds(UnsubAck, packet_ids),
    st.just(PingReq()),
    st.just(PingResp()),
    st.just(Disconnect()),
)
SETTINGS = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@SETTINGS
@given(any_packets)
def test_decode_of_encode_is_identity(packet: mqtt.Packet) -> None:
    assert decode_frame(mqtt.encode(packet)) == packet


@SETTINGS
@given(connects(), st.lists(client_packets, max_size=6))
def test_client_packets_round_trip_through_a_connection(
    connect: Connect, packets: list[mqtt.Packet]
) -> None:
    connection = ServerConnection()
    data = b"".join(mqtt.encode(p) for p in [connect, *packets])
    assert connection.receive_data(data) == [connect, *packets]


@settings(max_examples=500, deadline=None)
@given(st.integers(0, mqtt.MAX_REMAINING_LENGTH))
@example(0)
@example(127)
@example(128)
@example(16_383)
@example(16_384)
@example(2_097_151)
@example(2_097_152)
@example(mqtt.MAX_REMAINING_LENGTH)
def test_remaining_length_round_trip(length: int) -> None:
    encoded = mqtt.encode_remaining_length(length)
    assert encoded == varint(length)
    expected_size = 1 if length < 128 else 2 if length < 16_384 else 3 if length < 2_097_152 else 4
    assert len(encoded) == expected_size
    value = sum((byte & 0x7F) << (7 * i) for i, byte in enumerate(encoded))
    assert value == length
    assert all(byte & 0x80 for byte in encoded[:-1]) and not encoded[-1] & 0x80


@pytest.mark.parametrize("length", [-1, mqtt.MAX_REMAINING_LENGTH + 1])
def test_remaining_length_out_of_range(length: int) -> None:
    with pytest.raises(ValueError):
        mqtt.encode_remaining_length(length)


def feed(chunks: list[bytes], **options: Any) -> tuple[list[mqtt.Packet], bool]:
    """Feed chunks until the connection closes or refuses; the packets and whether it refused."""
    connection = ServerConnection(**options)
    packets: list[mqtt.Packet] = []
    for chunk in chunks:
        try:
            packets += connection.receive_data(chunk)
        except ProtocolError:
            return packets, True
        if connection.state is State.CLOSED:
            break
    return packets, False


@st.composite
def chunkings(draw: st.DrawFn, data: bytes) -> list[bytes]:
    cuts = sorted(draw(st.lists(st.integers(0, len(data)), max_size=8)))
    bounds = [0, *cuts, len(data)]
    return [data[a:b] for a, b in itertools.pairwise(bounds)]


@st.composite
def framed_garbage(draw: st.DrawFn) -> bytes:
    """Frames with a correct remaining length but arbitrary type, flags and body."""
    frames = draw(st.lists(st.tuples(st.integers(0, 255), st.binary(max_size=40)), max_size=6))
    return b"".join(bytes([first]) + varint(len(body)) + body for first, body in frames)


hostile_bytes = st.one_of(
    st.binary(max_size=200),
    framed_garbage(),
    st.tuples(connects(), framed_garbage()).map(lambda t: mqtt.encode(t[0]) + t[1]),
    st.tuples(connects(), st.binary(max_size=200)).map(lambda t: mqtt.encode(t[0]) + t[1]),
)


@settings(max_examples=500, deadline=None)
@given(hostile_bytes, st.data(), st.sampled_from([64, 1024, mqtt.DEFAULT_MAX_PACKET_BYTES]))
def test_arbitrary_bytes_give_packets_or_protocol_error(
    data: bytes, draw: st.DataObject, max_packet_bytes: int
) -> None:
    whole, whole_refused = feed([data], max_packet_bytes=max_packet_bytes)
    chunks = draw.draw(chunkings(data))
    pieces, pieces_refused = feed(chunks, max_packet_bytes=max_packet_bytes)

    assert all(isinstance(p, PACKET_TYPES) for p in whole + pieces)
    assert whole_refused == pieces_refused
    if not whole_refused:
        assert pieces == whole
    else:
        assert whole == []  # a refused chunk returns nothing: the connection is closed anyway


@settings(max_examples=300, deadline=None)
@given(
    connects(),
    st.lists(client_packets, max_size=6),
    st.booleans(),
    st.data(),
)
def test_truncated_stream_returns_a_prefix_and_waits(
    connect: Connect, packets: list[mqtt.Packet], disconnect: bool, draw: st.DataObject
) -> None:
    stream: list[mqtt.Packet] = [connect, *packets, *([Disconnect()] if disconnect else [])]
    frames = [mqtt.encode(p) for p in stream]
    data = b"".join(frames)
    ends = [sum(len(f) for f in frames[: i + 1]) for i in range(len(frames))]
    cut = draw.draw(st.integers(0, len(data)))

    connection = ServerConnection()
    first = connection.receive_data(data[:cut])

    assert first == [p for p, end in zip(stream, ends, strict=True) if end <= cut]
    if connection.state is State.CLOSED:
        assert first == stream  # only a whole stream ending in DISCONNECT closes it
        return
    assert connection.receive_data(data[cut:]) == stream[len(first) :]


def test_an_unknown_packet_is_never_encoded() -> None:
    with pytest.raises(mqtt.LocalProtocolError):
        mqtt.encode(object())  # type: ignore[arg-type]


def test_sending_after_close_is_our_mistake_not_the_peers() -> None:
    connection = connected()
    connection.close()
    with pytest.raises(mqtt.LocalProtocolError):
        connection.send(PingResp())
