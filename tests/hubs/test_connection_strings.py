"""Each connector's connection string is checked when its hub is linked: a mistake is a 400004
that names the field and what to do, and never repeats a secret."""

from __future__ import annotations

import pytest

from devprov.domain.errors import DpsError
from devprov.domain.models import LinkedHub
from devprov.hubs import azure_iothub, http_hub, mosquitto

KEY = "c2VjcmV0LWtleS1zZWNyZXQta2V5LXNlY3JldC1rZXk="


def hub(connector: str, text: str | None, host: str = "hub.example") -> LinkedHub:
    return LinkedHub(host_name=host, connector=connector, connection_string=text)


def refused(prepare: object, linked: LinkedHub) -> str:
    assert callable(prepare)
    with pytest.raises(DpsError) as error:
        prepare(linked)
    assert error.value.error_code == 400004
    assert error.value.message.startswith("connectionString:"), error.value.message
    message: str = error.value.message
    return message


def test_azure_iothub_takes_a_service_policy_with_an_optional_port_and_ca() -> None:
    text = f"HostName=hub.example:8443;SharedAccessKeyName=iothubowner;SharedAccessKey={KEY}"
    settings = azure_iothub.parse(hub("azure-iothub", text + ";CaFile=/etc/ca.pem"))
    assert (settings.host, settings.key_name, settings.ca_file) == (
        "hub.example:8443", "iothubowner", "/etc/ca.pem"
    )  # fmt: skip
    assert KEY not in settings.shown


@pytest.mark.parametrize(
    ("text", "words"),
    [
        (None, "iothubowner"),
        ("garbage", "Name=value"),
        (f"HostName=hub.example;SharedAccessKey={KEY}", "SharedAccessKeyName is missing"),
        ("HostName=hub.example;SharedAccessKeyName=o;SharedAccessKey=not base64!", "base64"),
        (f"HostName=other.example;SharedAccessKeyName=o;SharedAccessKey={KEY}", "not the linked"),
        (f"HostName=hub.example;DeviceId=d;SharedAccessKey={KEY}", "a device's connection"),
        (f"HostName=hub.example;SharedAccessKeyName=o;SharedAccessKey={KEY};X=1", "unknown"),
    ],
)
def test_azure_iothub_refusals(text: str | None, words: str) -> None:
    message = refused(azure_iothub.prepare, hub("azure-iothub", text))
    assert words in message and KEY not in message


def test_mosquitto_takes_its_url_with_defaults_and_options() -> None:
    plain = mosquitto.parse(hub("mosquitto", "mqtt://admin:p%40ss@broker.example"))
    assert (plain.port, plain.password, plain.tls) == (1883, "p@ss", False)
    assert plain.topics == ("devices/{deviceId}/#",) and "p@ss" not in plain.shown
    tls = mosquitto.parse(
        hub("mosquitto", "mqtts://admin:pw@broker.example?ca=/ca.pem&topic=t/{deviceId}/%23"
            "&topic=u/{deviceId}&twin=t/{deviceId}/twin")
    )  # fmt: skip
    assert (tls.port, tls.ca_file, tls.topics, tls.twin_topic) == (
        8883, "/ca.pem", ("t/{deviceId}/#", "u/{deviceId}"), "t/{deviceId}/twin"
    )  # fmt: skip


@pytest.mark.parametrize(
    ("text", "words"),
    [
        (None, "broker's URL"),
        ("http://admin:secret-pw@broker.example", "scheme"),
        ("mqtt://broker.example", "admin user and password"),
        ("mqtt://admin:secret-pw@broker.example?ca=/ca.pem", "mqtts:// only"),
        ("mqtt://admin:secret-pw@broker.example?x=1", "unknown"),
        ("mqtt://admin:secret-pw@broker.example?topic=devices/%23", "{deviceId}"),
        ("mqtt://admin:secret-pw@broker.example?topic=d/{deviceId}%23", "{deviceId}"),
        ("mqtt://admin:secret-pw@broker.example?twin=d/{deviceId}/%2B", "no wildcards"),
        ("mqtt://admin:secret-pw@broker.example:99999", "not a URL"),
    ],
)
def test_mosquitto_refusals(text: str | None, words: str) -> None:
    message = refused(mosquitto.prepare, hub("mosquitto", text))
    assert words in message and "secret-pw" not in message


def test_http_takes_a_url_and_a_secret() -> None:
    settings = http_hub.parse(hub("http", "Url=https://reg.example:8443/p?q=1;Secret=" + "s" * 20))
    assert settings.where == "HTTP back end https://reg.example:8443"


@pytest.mark.parametrize(
    ("text", "words"),
    [
        (None, "Url="),
        ("Url=ftp://reg.example;Secret=" + "s" * 20, "http(s) URL"),
        ("Url=https://u:p@reg.example;Secret=" + "s" * 20, "credentials"),
        ("Url=https://reg.example;Secret=short", "Secret"),
        ("Url=https://reg.example;Secret=" + "s" * 20 + ";Mode=x", "unknown"),
    ],
)
def test_http_refusals(text: str | None, words: str) -> None:
    message = refused(http_hub.prepare, hub("http", text))
    assert words in message and "s" * 20 not in message
