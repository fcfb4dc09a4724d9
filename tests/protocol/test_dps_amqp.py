"""DPS over AMQP (devprov.protocol.dps_amqp): addresses, SASL messages, requests and replies."""

from __future__ import annotations

import json
import uuid

import pytest

from devprov.domain.errors import DpsError
from devprov.protocol import amqp
from devprov.protocol.amqp_frames import Message
from devprov.protocol.amqp_types import Symbol, ULong
from devprov.protocol.dps_amqp import (
    DpsAmqpError,
    Identity,
    OperationStatus,
    Register,
    condition_for,
    parse_address,
    parse_plain,
    parse_request,
    parse_tpm_init,
    rejection,
    reply,
    tpm_answer,
    tpm_segments,
)


@pytest.mark.parametrize(
    "address",
    [
        "0ne00000001/registrations/dev-1",  # Node
        "amqps://global.azure-devices-provisioning.net/0ne00000001/registrations/dev-1",  # C
    ],
)
def test_link_addresses_of_the_sdks(address: str) -> None:
    assert parse_address(address) == Identity("0ne00000001", "dev-1")


@pytest.mark.parametrize(
    "address", [None, "", "0ne00000001/devices/dev-1", "0ne00000001/registrations/", "$cbs"]
)
def test_other_addresses_are_not_dps(address: str | None) -> None:
    with pytest.raises(DpsAmqpError, match="is not"):
        parse_address(address)


def test_identities_compare_without_case() -> None:
    assert Identity("0NE00000001", "Dev-1").same(Identity("0ne00000001", "dev-1"))
    assert not Identity("0ne00000001", "dev-1").same(Identity("0ne00000001", "dev-2"))


def test_plain_names_the_device_and_carries_the_token() -> None:
    identity, token = parse_plain(b"\x000ne00000001/registrations/dev-1\x00SharedAccessSignature x")
    assert identity == Identity("0ne00000001", "dev-1")
    assert token == "SharedAccessSignature x"
    with pytest.raises(DpsAmqpError):
        parse_plain(b"no separators")
    with pytest.raises(DpsAmqpError):
        parse_plain(b"\x00\xff\x00x")


def test_tpm_init_names_the_device_and_carries_its_endorsement_key() -> None:
    identity, ek = parse_tpm_init(b"\x000ne00000001\x00dev-1\x00\x01\x3a\x00rest")
    assert identity == Identity("0ne00000001", "dev-1")
    assert ek == b"\x01\x3a\x00rest"  # binary, zero bytes and all
    bad = (b"0ne\x00dev\x00ek", b"\x00\x00dev\x00ek", b"\x000ne\x00dev", b"\x00\xff\x00d\x00e")
    for init in bad:
        with pytest.raises(DpsAmqpError):
            parse_tpm_init(init)
    assert tpm_answer(b"\x00srk") == b"srk"
    with pytest.raises(DpsAmqpError):
        tpm_answer(b"\x01srk")


def test_the_activation_blob_goes_in_numbered_segments() -> None:
    blob = bytes(range(256)) * 3  # 768 bytes, as an RSA-2048 EK's blob
    segments = tpm_segments(blob)
    assert [segment[0] for segment in segments] == [0x80, 0xC1]
    assert b"".join(segment[1:] for segment in segments) == blob
    assert all(len(segment) <= 401 for segment in segments)
    big = tpm_segments(bytes(2000))  # never more than four: the sequence has two bits
    assert [segment[0] for segment in big] == [0x80, 0x81, 0x82, 0xC3]


def test_requests_of_the_sdks() -> None:
    node_register = Message(
        correlation_id="c1",
        application_properties={
            "iotdps-operation-type": "iotdps-register",
            "iotdps-forceRegistration": False,
        },
        data=b'{"registrationId":"dev-1"}',
    )
    assert parse_request(node_register) == Register(b'{"registrationId":"dev-1"}')
    value_register = Message(
        application_properties={"iotdps-operation-type": "iotdps-register"}, value="{}"
    )
    assert parse_request(value_register) == Register(b"{}")
    node_poll = Message(
        application_properties={
            "iotdps-operation-type": "iotdps-get-operationstatus",
            "iotdps-operation-id": "op-1",
        },
        value="",
    )
    assert parse_request(node_poll) == OperationStatus("op-1")
    for properties in (
        {},
        {"iotdps-operation-type": "iotdps-delete"},
        {"iotdps-operation-type": "iotdps-get-operationstatus"},
    ):
        with pytest.raises(DpsAmqpError):
            parse_request(Message(application_properties=properties))


def test_a_reply_echoes_the_correlation_id_with_its_type() -> None:
    correlation = uuid.uuid4()
    answer = reply(Message(correlation_id=correlation), {"status": "assigning"}, 2)
    assert answer.correlation_id == correlation
    assert answer.application_properties == {"retry-after": "2", "Retry-After": "2"}
    assert json.loads(answer.data or b"") == {"status": "assigning"}
    # The C SDK sends no ids; a message id stands in for a missing correlation id.
    assert reply(Message(), {}, None).correlation_id is None
    assert reply(Message(message_id=ULong(7)), {}, None).correlation_id == ULong(7)


def test_replies_are_ascii_json() -> None:
    answer = reply(Message(), {"payload": {"name": "café"}}, None)
    assert answer.data == b'{"payload":{"name":"caf\\u00e9"}}'


@pytest.mark.parametrize(
    ("status", "condition"),
    [
        (400, "com.microsoft:argument-error"),
        (401, amqp.UNAUTHORIZED_ACCESS),
        (403, amqp.UNAUTHORIZED_ACCESS),
        (404, amqp.NOT_FOUND),
        (413, "com.microsoft:argument-error"),
        (429, "com.microsoft:device-container-throttled"),
        (500, amqp.INTERNAL_ERROR),
    ],
)
def test_refusals_name_the_condition_of_their_status(status: int, condition: str) -> None:
    assert condition_for(status) == condition


def test_a_rejection_carries_the_azure_error_body_and_retry_after_when_transient() -> None:
    body = {"errorCode": 403001, "message": "disabled"}
    error = rejection(DpsError(403, 403001, "disabled"), body, 3)
    assert json.loads(error.description or "") == body
    assert error.info is None
    throttled = rejection(DpsError(429, 429001, "slow down"), {}, 3)
    assert throttled.info == {Symbol("retry-after"): 3, Symbol("Retry-After"): 3}
