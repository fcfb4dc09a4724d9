"""`devprov bench --connector`: the hub a connection string names is the one devices go to."""

from __future__ import annotations

from devprov.bench.runner import connector_hub_name


def test_the_hub_is_the_connection_strings_host() -> None:
    azure = "HostName=hub.azure-devices.net:443;SharedAccessKeyName=o;SharedAccessKey=k"
    assert connector_hub_name(azure) == "hub.azure-devices.net"
    assert connector_hub_name("mqtt://admin:pw@broker.example:18830") == "broker.example"
    assert connector_hub_name("Url=https://reg.example/devprov;Secret=s") == "reg.example"
