"""devprov's settings: one typed object from a TOML file, DEVPROV_* variables and flags.

Each setting has one name and one default, here. Flags (when given) win over environment
variables (`DEVPROV_HTTPS_PORT=8443`), which win over the TOML file (`https_port = 8443`), which
wins over the default. The file is `--config FILE` or `DEVPROV_CONFIG`, else `devprov.toml` in
the data dir when there is one. Settings left unset (None) keep what the instance recorded at
its last start (see instance.py), so `devprov serve` restarts as it was.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Literal

from pydantic import Field, model_validator
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    TomlConfigSettingsSource,
)

DEFAULT_DATA_DIR = Path("devprov-data")
CONFIG_FILE_NAME = "devprov.toml"


class Settings(BaseSettings):
    """What one devprov runs with."""

    model_config = SettingsConfigDict(env_prefix="DEVPROV_", extra="forbid")

    data_dir: Path = Field(DEFAULT_DATA_DIR, description="Where devprov keeps its state.")
    host: str | None = Field(None, description="Address to listen on (default localhost).")
    https_port: int | None = Field(None, ge=1, le=65535, description="HTTPS port (default 443).")
    mqtt_port: int | None = Field(None, ge=1, le=65535, description="MQTT port (default 8883).")
    amqp_port: int | None = Field(None, ge=1, le=65535, description="AMQP port (default 5671).")
    db: str | None = Field(
        None, description="Database URL: sqlite:///FILE (default in the data dir) or postgresql://"
    )
    names: list[str] = Field(
        default_factory=list,
        description="Extra host names for the server certificate; the first is advertised.",
    )
    tls_cert: Path | None = Field(None, description="Your own server certificate (PEM chain).")
    tls_key: Path | None = Field(None, description="The key of tls_cert.")
    webhook_timeout: float = Field(
        10.0, gt=0, description="Seconds to wait for a custom allocation webhook."
    )
    webhook_secret: str | None = Field(
        None,
        description="Signs every webhook request (X-Devprov-Signature) unless the"
        " enrollment has its own customAllocationDefinition.webhookSecret.",
    )
    webhook_retries: int = Field(
        0,
        ge=0,
        le=10,
        description="Retries of a webhook call that could not connect or got"
        " 502/503/504, within webhook_timeout (0: none, as DPS).",
    )
    allocators: dict[str, str] = Field(
        default_factory=dict,
        description="In-process allocators: NAME = package.module:function; an enrollment"
        " selects one with customAllocationDefinition.webhookUrl allocator://NAME. Flags add"
        " to (or replace by name) those of the file.",
    )
    exchange_log_size: int = Field(
        100, ge=0, description="Allocation exchanges kept per enrollment (0: none recorded)."
    )
    hub_connector_timeout: float = Field(
        10.0,
        gt=0,
        description="Seconds a hub connector's call (an identity on an external hub) may take,"
        " retries of throttling and server errors included; then the registration fails (400213).",
    )
    registration_deadline: float = Field(
        60.0,
        gt=0,
        description="Seconds a registration may take (webhook and hub calls included); then it"
        " fails (500102). A registration a stopped process left unfinished is cleaned up and"
        " its operation answered after twice this (this plus 10 s at most).",
    )
    fast_path_seconds: float = Field(
        1.5, ge=0, description="How long a register waits for its result before answering 202."
    )
    max_message_bytes: int = Field(
        96 * 1024, ge=1024, description="Largest device message accepted, payload included."
    )
    drain_seconds: float = Field(
        30.0,
        ge=0,
        description="On SIGTERM, how long a node waits for the registrations it holds to end"
        " after it stops taking connections (its /readyz answers 503 meanwhile).",
    )
    workers: int = Field(1, ge=1, description="Processes serving the same ports and store.")
    default_hub: str | None = Field(
        None, description="Link a built-in IoT hub of this name when no hub is linked yet."
    )
    hub_message_retention: int = Field(
        10_000, ge=1, description="Device-to-cloud messages a built-in hub keeps (newest)."
    )
    audit_retention_days: float = Field(
        90.0, gt=0, description="Days the audit trail of writes keeps an entry (then pruned)."
    )
    tls_handshake_timeout: float = Field(
        10.0, gt=0, description="Seconds a client has to finish its TLS handshake, on every port."
    )
    http_header_timeout: float = Field(
        10.0,
        gt=0,
        description="Seconds an HTTPS request's head (request line and headers, a WebSocket"
        " upgrade included) may take from its first byte; then the connection is closed.",
    )
    http_body_timeout: float = Field(
        30.0,
        gt=0,
        description="Seconds a request body may take to arrive once its head is in; then 408"
        " and the connection is closed.",
    )
    http_keepalive_timeout: float = Field(
        75.0,
        gt=0,
        description="Seconds an HTTPS connection may wait for its next request (its first one"
        " too) before it is closed.",
    )
    mqtt_connect_timeout: float = Field(
        30.0,
        gt=0,
        description="Seconds from accepting an MQTT connection to its CONNECT being complete;"
        " bytes do not restart it.",
    )
    mqtt_max_keep_alive: int = Field(
        1767,
        ge=1,
        le=65535,
        description="The longest MQTT keep-alive honoured (seconds; IoT Hub's ceiling): a"
        " client asking for more, or for none (0), is closed after 1.5 x this of silence.",
    )
    amqp_open_timeout: float = Field(
        30.0,
        gt=0,
        description="Seconds from accepting an AMQP connection to its open (SASL included).",
    )
    amqp_idle_timeout: float = Field(
        120.0, gt=0, description="Seconds of silence after which an open AMQP connection is closed."
    )
    max_connections: int = Field(
        20_000,
        ge=0,
        description="Connections each listener (HTTPS, MQTT, AMQP) holds at most; the excess"
        " is closed at once (0: no cap).",
    )
    max_connections_per_address: int = Field(
        0,
        ge=0,
        description="Connections each listener holds from one source address; the excess is"
        " closed at once (0: no cap; devices behind one NAT share an address).",
    )
    max_registrations_in_flight: int = Field(
        2_000,
        ge=0,
        description="Registrations provisioned at once; more are answered 429 (429001) with"
        " Retry-After (0: no cap).",
    )
    max_registrations_in_flight_per_device: int = Field(
        4,
        ge=0,
        description="Registrations of one registration id provisioned at once; more are"
        " answered 429 (429001) with Retry-After (0: no cap).",
    )
    throttle_retry_after: int = Field(
        3, ge=1, description="The Retry-After (seconds) of a registration answered 429."
    )
    sas_max_lifetime: float = Field(
        365 * 24 * 3600.0,
        gt=0,
        description="Seconds into the future a SAS token's expiry may be (devices and the"
        " service API); a token valid for longer is refused (401).",
    )
    log_level: str = Field("INFO", description="Logging level.")
    log_format: Literal["text", "json"] = Field(
        "text", description="Log lines as readable text, or one JSON object a line."
    )
    metrics: Literal["loopback", "open", "token", "off"] = Field(
        "loopback",
        description="Who may read /metrics: loopback peers, anyone, a bearer token, or no one.",
    )
    metrics_token: str | None = Field(
        None, description="The bearer token /metrics asks for when metrics = 'token'."
    )
    console: bool = Field(True, description="Serve the web console at /console.")

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        return init_settings, env_settings, TomlConfigSettingsSource(settings_cls)

    @classmethod
    def load(cls, config_file: Path | None = None, **flags: Any) -> Settings:
        """The settings for these flags (None means "not given")."""
        given = {name: value for name, value in flags.items() if value not in (None, [])}
        path = config_file or _config_file(given.get("data_dir"))
        if path is None:
            return cls(**given)
        reading = type(
            "FileSettings", (cls,), {"model_config": {**cls.model_config, "toml_file": path}}
        )
        loaded: Settings = reading(**given)
        return cls.model_validate(loaded.model_dump())

    @model_validator(mode="after")
    def _token_rule_has_a_token(self) -> Settings:
        if self.metrics == "token" and not self.metrics_token:
            raise ValueError("metrics = 'token' needs metrics_token (the bearer token to ask for)")
        return self

    def tls_pair(self) -> tuple[Path, Path] | None:
        """The user's own certificate and key, when both are set."""
        if (self.tls_cert is None) != (self.tls_key is None):
            raise ValueError("tls_cert and tls_key go together")
        return (self.tls_cert, self.tls_key) if self.tls_cert and self.tls_key else None


def _config_file(data_dir: Path | None) -> Path | None:
    named = os.environ.get("DEVPROV_CONFIG")
    if named:
        return Path(named)
    directory = data_dir or Path(os.environ.get("DEVPROV_DATA_DIR") or DEFAULT_DATA_DIR)
    candidate = directory / CONFIG_FILE_NAME
    return candidate if candidate.is_file() else None
