"""Settings: flags over DEVPROV_* variables over the TOML file over the defaults."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import ValidationError

from devprov.settings import DEFAULT_DATA_DIR, Settings


def test_defaults_are_defined_once_here() -> None:
    settings = Settings.load()
    assert settings.data_dir == DEFAULT_DATA_DIR
    assert settings.webhook_timeout == 10.0
    assert settings.max_message_bytes == 96 * 1024
    assert settings.https_port is None  # None: keep what the instance recorded


def test_flags_beat_environment_beat_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "devprov.toml").write_text(
        'https_port = 8443\nmqtt_port = 8884\nwebhook_timeout = 3.5\nnames = ["hub.example"]\n'
    )
    monkeypatch.setenv("DEVPROV_MQTT_PORT", "9884")
    monkeypatch.setenv("DEVPROV_WEBHOOK_TIMEOUT", "4.5")

    settings = Settings.load(data_dir=tmp_path, webhook_timeout=5.5)

    assert settings.https_port == 8443  # file
    assert settings.mqtt_port == 9884  # environment over file
    assert settings.webhook_timeout == 5.5  # flag over both
    assert settings.names == ["hub.example"]


def test_the_data_dir_may_come_from_the_environment(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "devprov.toml").write_text("https_port = 7443\n")
    monkeypatch.setenv("DEVPROV_DATA_DIR", str(tmp_path))
    settings = Settings.load()
    assert settings.data_dir == tmp_path
    assert settings.https_port == 7443


def test_an_explicit_config_file(tmp_path: Path) -> None:
    config = tmp_path / "elsewhere.toml"
    config.write_text('log_level = "DEBUG"\n')
    assert Settings.load(config).log_level == "DEBUG"


def test_a_misspelt_setting_is_refused(tmp_path: Path) -> None:
    config = tmp_path / "devprov.toml"
    config.write_text("http_port = 8443\n")
    with pytest.raises(ValidationError, match="http_port"):
        Settings.load(config)


def test_tls_cert_and_key_go_together() -> None:
    with pytest.raises(ValueError, match="together"):
        Settings(tls_cert=Path("a.pem")).tls_pair()
    assert Settings(tls_cert=Path("a.pem"), tls_key=Path("k.pem")).tls_pair() == (
        Path("a.pem"),
        Path("k.pem"),
    )


def test_the_payload_settings_come_from_the_file_or_flags(tmp_path: Path) -> None:
    (tmp_path / "devprov.toml").write_text(
        'webhook_secret = "from-file"\nwebhook_retries = 2\n'
        '[allocators]\nbymodel = "tests.allocation.sample_allocators:by_model"\n'
    )

    from_file = Settings.load(data_dir=tmp_path)
    flagged = Settings.load(data_dir=tmp_path, allocators={"other": "m:f"}, webhook_secret="x")

    assert from_file.allocators == {"bymodel": "tests.allocation.sample_allocators:by_model"}
    assert (from_file.webhook_secret, from_file.webhook_retries) == ("from-file", 2)
    assert from_file.exchange_log_size == 100
    # Allocators merge: a flag adds one to (or replaces one by name in) the file's.
    assert flagged.allocators == {**from_file.allocators, "other": "m:f"}
    assert flagged.webhook_secret == "x"
    assert Settings.load().webhook_retries == 0  # off by default, as DPS


def test_observability_settings_and_the_token_rule() -> None:
    settings = Settings.load()
    assert (settings.log_format, settings.metrics, settings.console) == ("text", "loopback", True)
    assert Settings.load(metrics="token", metrics_token="t0ken").metrics_token == "t0ken"
    with pytest.raises(ValidationError, match="metrics_token"):
        Settings.load(metrics="token")
    with pytest.raises(ValidationError):
        Settings.load(log_format="xml")
