"""What the fuzzers drive: each target takes bytes from outside and may only refuse them.

A target returns normally when the parser accepted or refused the input the documented way (its
own error type); anything else it raises, or a property it breaks (an assertion), is a finding.
`SEEDS` gives each target valid inputs to start from, so coverage-guided mutation reaches past
the first checks. tests/fuzz/run.py runs a target under atheris; tests/fuzz/test_fuzz.py runs
them all in `make test` (a few seconds each) and `make soak` (minutes each).
"""

from __future__ import annotations

import base64
import contextlib
import json
import math
import struct
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import NameOID

from devprov.attestation import sas
from devprov.attestation.tpm import TpmError, parse_public
from devprov.attestation.tpm_device import TpmKeys
from devprov.domain import cas
from devprov.domain.certificates import certificate_info, common_name, load_certificate
from devprov.domain.credentials import parse_csr
from devprov.domain.errors import DpsError
from devprov.domain.json_text import MAX_DEPTH, MAX_NUMBER_CHARACTERS, JsonRefused, parse_json
from devprov.protocol import amqp, dps_amqp, dps_mqtt, iothub_mqtt, mqtt
from devprov.protocol.amqp_frames import Message, accepted, decode_body, decode_message
from devprov.protocol.amqp_types import DecodeError, decode_all
from devprov.protocol.dps import parse_register_body

Target = Callable[[bytes], None]


def _split(data: bytes) -> tuple[bytes, bytes]:
    """Two inputs from one: the first byte says where to cut the rest."""
    if not data:
        return b"", b""
    rest = data[1:]
    cut = data[0] * len(rest) // 256
    return rest[:cut], rest[cut:]


def _text(data: bytes) -> str:
    """Text as aiohttp hands on a header: bytes that are not UTF-8 become surrogates."""
    return data.decode("utf-8", "surrogateescape")


def _mqtt_text(data: bytes) -> str:
    """Text as the MQTT codec hands it on: well-formed UTF-8 only."""
    return data.decode("utf-8", "replace")


# MQTT ------------------------------------------------------------------------------------------


def _server_packets(chunks: list[bytes]) -> list[mqtt.Packet] | None:
    connection = mqtt.ServerConnection(max_packet_bytes=4096)
    packets: list[mqtt.Packet] = []
    try:
        for chunk in chunks:
            packets += connection.receive_data(chunk)
    except mqtt.RemoteProtocolError:
        return None
    return packets


def mqtt_codec(data: bytes) -> None:
    """The server's MQTT codec: bytes in one read or cut in two give the same packets (or the
    same refusal), every packet it accepts encodes again, and the client-side decoder (used by
    devprov's own clients) refuses what it cannot read."""
    whole = _server_packets([data[1:]] if data else [])
    first, second = _split(data)
    assert _server_packets([first, second]) == whole
    for packet in whole or []:
        try:
            again = mqtt.encode(packet)
        except mqtt.LocalProtocolError:
            continue
        frame = mqtt.take_frame(bytearray(again), 1 << 20)
        assert frame is not None
        assert mqtt.decode(*frame) == packet, packet
    buffer = bytearray(data)
    try:
        while (frame := mqtt.take_frame(buffer, 4096)) is not None:
            mqtt.decode(*frame)
    except mqtt.RemoteProtocolError:
        pass


def mqtt_topics(data: bytes) -> None:
    """DPS's user name and request topics, and the hub's device topics."""
    first, second = (_mqtt_text(part) for part in _split(data))
    for parse in (dps_mqtt.parse_username, dps_mqtt.parse_request_topic):
        try:
            parsed = parse(first)
        except dps_mqtt.TopicError:
            continue
        rid = getattr(parsed, "rid", None)
        if rid is not None:
            topic = dps_mqtt.response_topic(200, rid, 3)
            assert len(topic.encode("utf-8", "surrogatepass")) <= 0xFFFF
    with contextlib.suppress(iothub_mqtt.HubTopicError):
        iothub_mqtt.parse_device_publish(first, second or "dev-1")
    with contextlib.suppress(iothub_mqtt.HubTopicError):
        iothub_mqtt.parse_hub_username(first, second)


# AMQP ------------------------------------------------------------------------------------------


def amqp_codec(data: bytes) -> None:
    """The AMQP server connection driven as devprov's listener drives it (SASL answered, links
    taken, messages settled), then the value, performative and message decoders on their own."""
    connection = amqp.ServerConnection(mechanisms=("TPM", "PLAIN"))
    pending = [data]
    try:
        while pending and connection.state is not amqp.State.CLOSED:
            for event in connection.receive_data(pending.pop()):
                if isinstance(event, amqp.SaslStarted | amqp.SaslAnswered):
                    connection.sasl_outcome(0)
                    pending.append(b"")
                elif isinstance(event, amqp.LinkAttached):
                    connection.accept_link(event.link)
                elif isinstance(event, amqp.MessageReceived):
                    _dps_request(event.message)
                    connection.settle(event.link, event.delivery_id, accepted())
                connection.data_to_send()
    except amqp.RemoteProtocolError:
        pass
    for decode in (decode_all, decode_message):
        with contextlib.suppress(DecodeError):
            decode(data)
    for kind in (0, 1):
        with contextlib.suppress(DecodeError):
            decode_body(kind, data)
    for sasl in (dps_amqp.parse_plain, dps_amqp.parse_tpm_init, dps_amqp.tpm_answer):
        with contextlib.suppress(dps_amqp.DpsAmqpError):
            sasl(data)


def _dps_request(message: Message) -> None:
    with contextlib.suppress(dps_amqp.DpsAmqpError):
        dps_amqp.parse_request(message)


# JSON and the register body ----------------------------------------------------------------


def _reference_json(data: bytes) -> object:
    """The limits checked the slow, obvious way: every number by its hook, every value walked."""

    def number(text: str) -> float:
        assert len(text) <= MAX_NUMBER_CHARACTERS
        value = float(text)
        assert math.isfinite(value)
        return int(text) if text.lstrip("-").isdigit() else value

    def walk(value: object, depth: int) -> None:
        if isinstance(value, str):
            assert "\x00" not in value
        elif isinstance(value, dict | list):
            assert depth < MAX_DEPTH
            for key in value if isinstance(value, dict) else ():
                walk(key, depth)
            for item in value.values() if isinstance(value, dict) else value:
                walk(item, depth + 1)

    def constant(name: str) -> None:
        raise AssertionError(name)

    value = json.loads(data, parse_int=number, parse_float=number, parse_constant=constant)
    walk(value, 0)
    return value


def json_limits(data: bytes) -> None:
    """parse_json accepts exactly what the slow reference accepts, and the same value; what it
    accepts serialises without NaN."""
    accepted = True
    try:
        value = parse_json(data)
    except JsonRefused:
        accepted = False
    try:
        reference = _reference_json(data)
    except (AssertionError, ValueError, RecursionError):
        assert not accepted, f"parse_json accepted what the reference refuses: {data!r}"
        return
    assert accepted, f"parse_json refused what the reference accepts: {data!r}"
    assert reference == value, (reference, value)
    json.dumps(value, allow_nan=False)


def register_body(data: bytes) -> None:
    """A register body is refused with a DpsError or gives a payload fit to forward."""
    try:
        request = parse_register_body(data)
    except DpsError as error:
        assert error.status in (400, 413), error
        return
    json.dumps(request.payload, allow_nan=False)
    json.dumps(request.tpm, allow_nan=False)


# Credentials ---------------------------------------------------------------------------------


def sas_token(data: bytes) -> None:
    """A SAS token is parsed or refused with a 401; a parsed one can be checked."""
    try:
        token = sas.parse_sas(_text(data))
    except DpsError as error:
        assert error.status == 401, error
        return
    sas.signature_matches(token, [b"key"])
    try:
        sas.check_expiry(token, now=0)
    except DpsError as error:
        assert error.status == 401, error


def x509_input(data: bytes) -> None:
    """Certificates (enrollments, CAs, proofs) and CSRs as their senders write them."""
    text = _text(data)
    try:
        certificate = load_certificate(text)
        certificate_info(certificate)
        common_name(certificate)
        cas.new_ca_record("ca-1", text, None)
    except DpsError as error:
        assert error.status == 400, error
    try:
        parse_csr(text, "dev-1")
    except DpsError as error:
        assert error.status == 400, error


def tpm_input(data: bytes) -> None:
    """TPM2B_PUBLIC blobs, raw and as a register body's base64 `tpm` object."""
    with contextlib.suppress(TpmError):
        parse_public(data)
    first, second = _split(data)
    body = {
        "endorsementKey": base64.b64encode(first).decode(),
        "storageRootKey": base64.b64encode(second).decode(),
    }
    try:
        TpmKeys.from_body(body).parsed()
    except DpsError as error:
        assert error.status == 400, error
    try:
        TpmKeys.from_body({"endorsementKey": _text(first), "storageRootKey": _text(second)})
    except DpsError as error:
        assert error.status == 400, error


# Seeds -----------------------------------------------------------------------------------------


def _mqtt_seeds() -> list[bytes]:
    connect = mqtt.encode(
        mqtt.Connect(
            "dev-1",
            "0ne00000001/registrations/dev-1/api-version=2019-03-31",
            b"SharedAccessSignature sr=x&sig=y&se=1",
            keep_alive=60,
        )
    )
    publish = mqtt.encode(
        mqtt.Publish("$dps/registrations/PUT/iotdps-register/?$rid=1", b"{}", 1, 2)
    )
    subscribe = mqtt.encode(mqtt.Subscribe(1, (("$dps/registrations/res/#", 1),)))
    rest = mqtt.encode(mqtt.PingReq()) + mqtt.encode(mqtt.Disconnect())
    return [b"\x80" + connect + subscribe + publish + rest, b"\x10" + connect]


def _amqp_seeds() -> list[bytes]:
    from tests.protocol.node_amqp import SYMMETRIC_KEY, TPM, X509

    return [b"".join(stream) for stream in (SYMMETRIC_KEY, TPM, X509)]


def _certificate_seeds() -> list[bytes]:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "dev-1")])
    now = datetime.now(UTC)
    certificate = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(1)
        .not_valid_before(now)
        .not_valid_after(now + timedelta(days=1))
        .sign(key, hashes.SHA256())
    )
    csr = x509.CertificateSigningRequestBuilder().subject_name(name).sign(key, hashes.SHA256())
    der = certificate.public_bytes(serialization.Encoding.DER)
    pem = certificate.public_bytes(serialization.Encoding.PEM)
    csr_der = csr.public_bytes(serialization.Encoding.DER)
    return [pem, base64.b64encode(der), base64.b64encode(pem), base64.b64encode(csr_der)]


def _tpm_seeds() -> list[bytes]:
    from tests.tpm_support import rsa_storage_public

    key = rsa.generate_private_key(public_exponent=65537, key_size=2048).public_key()
    blob = rsa_storage_public(key)
    return [bytes([128]) + blob + blob, blob]


def _json_seeds() -> list[bytes]:
    return [
        b'{"n": ' + b"9" * 64 + b', "m": -' + b"9" * 63 + b', "f": 1.5e308, "g": 1e-320}',
        b'{"s": "' + b"1" * 80 + b'", "e": "e999", "z": "\\u0000"}',
        b"[" * 64 + b"1" + b"]" * 64,
        b'{"registrationId": "dev-1", "payload": {"a": [1, 2.5, -3e10, true, null, "\\u00e9"]}}',
        b'{"tpm": {"endorsementKey": "AAE=", "storageRootKey": "AAE="}, "csr": "MIIB"}',
        b"[[[[[[[[[[{}]]]]]]]]]]",
    ]


def _sas_seeds() -> list[bytes]:
    token = sas.build_sas("0ne00000001/registrations/dev-1", base64.b64encode(b"k" * 32).decode())
    return [token.encode(), b"SharedAccessSignature sr=a%2Fb&sig=AAAA&se=99&skn=registration"]


def _topic_seeds() -> list[bytes]:
    return [
        b"\x80$dps/registrations/PUT/iotdps-register/?$rid=1dev-1",
        b"\x80$dps/registrations/GET/iotdps-get-operationstatus/?$rid=2&operationId=5.a.bdev-1",
        b"\x800ne00000001/registrations/dev-1/api-version=2019-03-31&ClientVersion=x",
        b"\xf0$iothub/twin/PATCH/properties/reported/?$rid=3dev-1",
        b"\xf0$iothub/methods/res/200/?$rid=4dev-1",
        b"\x10" + struct.pack("!H", 0),
    ]


TARGETS: dict[str, Target] = {
    "mqtt_codec": mqtt_codec,
    "mqtt_topics": mqtt_topics,
    "amqp_codec": amqp_codec,
    "json_limits": json_limits,
    "register_body": register_body,
    "sas_token": sas_token,
    "x509_input": x509_input,
    "tpm_input": tpm_input,
}

SEEDS: dict[str, Callable[[], list[bytes]]] = {
    "mqtt_codec": _mqtt_seeds,
    "mqtt_topics": _topic_seeds,
    "amqp_codec": _amqp_seeds,
    "json_limits": _json_seeds,
    "register_body": _json_seeds,
    "sas_token": _sas_seeds,
    "x509_input": _certificate_seeds,
    "tpm_input": _tpm_seeds,
}
