"""Connection strings shown to people: recognisable, never usable."""

from __future__ import annotations

import pytest

from devprov.hubs.masking import masked


@pytest.mark.parametrize(
    ("text", "shown"),
    [
        (
            "HostName=h.example:8443;SharedAccessKeyName=iothubowner;SharedAccessKey=c2VjcmV0",
            "HostName=h.example:8443;SharedAccessKeyName=iothubowner;SharedAccessKey=***",
        ),
        ("mqtt://admin:pw@broker.example:18830", "mqtt://admin:***@broker.example:18830"),
        ("mqtts://admin:pw@b.example?ca=/ca.pem", "mqtts://admin:***@b.example/***"),
        (
            "Url=https://reg.example/hook?code=abc;Secret=s3cret-s3cret-s3cret",
            "Url=https://reg.example/***;Secret=***",
        ),
    ],
)
def test_hosts_and_names_stay_secrets_go(text: str, shown: str) -> None:
    assert masked(text) == shown
