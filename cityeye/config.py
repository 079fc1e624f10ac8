"""Validated configuration: environment variables and/or a YAML file.

Every setting has a default that works with the embedded stack; anything
can be overridden by a YAML file (``--config FILE`` or ``CITYEYE_CONFIG``)
and by environment variables ``CITYEYE_<SECTION>__<FIELD>`` (environment
wins), e.g. ``CITYEYE_KAFKA__BOOTSTRAP=kafka:9092``,
``CITYEYE_INFLUX__TOKEN=...``. Secrets are :class:`pydantic.SecretStr`, so
they never show in logs, reprs or error messages.

The Kafka client tuning lives here, per broker profile: ``kafka`` (Apache
Kafka defaults) and ``tansu`` (the embedded/test broker: short group
session so joins are quick, short fetch wait; see docs/kafka-on-tansu.md).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, Field, SecretStr, ValidationError, field_validator, model_validator
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict

from cityeye.contracts import MQTT_TOPIC_FILTERS
from cityeye.errors import ConfigError
from cityeye.ingest_settings import IngestSettings, RateLimitSettings
from cityeye.kinds import use_kinds_file

__all__ = [
    "KafkaSettings",
    "MqttTls",
    "MqttSettings",
    "InfluxSettings",
    "WebhookSettings",
    "IngestSettings",
    "RateLimitSettings",
    "MetricsSettings",
    "Settings",
    "load_settings",
]


class KafkaSettings(BaseModel):
    bootstrap: str = "127.0.0.1:9092"
    #: ``tansu`` applies the client settings the embedded broker needs.
    profile: Literal["kafka", "tansu"] = "kafka"
    #: 1 for Tansu's exact table recovery (see the notes); Kafka: default.
    client_id_prefix: str = "cityeye"
    consumer_group_prefix: str = "cityeye"

    @property
    def session_timeout_s(self) -> float:
        return 2.0 if self.profile == "tansu" else 10.0

    @property
    def heartbeat_interval_s(self) -> float:
        return 0.5 if self.profile == "tansu" else 3.0

    @property
    def fetch_max_wait_ms(self) -> int:
        return 100 if self.profile == "tansu" else 500

    @property
    def list_offsets_exact(self) -> bool:
        """False where ListOffsets(latest) counts batches, not records (Tansu): read end offsets from Fetch."""
        return self.profile != "tansu"

    def consumer_kwargs(self) -> dict[str, Any]:
        """aiokafka ``AIOKafkaConsumer`` keyword arguments for this profile."""
        return {
            "bootstrap_servers": self.bootstrap,
            "session_timeout_ms": int(self.session_timeout_s * 1000),
            "heartbeat_interval_ms": int(self.heartbeat_interval_s * 1000),
            "fetch_max_wait_ms": self.fetch_max_wait_ms,
            "enable_auto_commit": False,
            "auto_offset_reset": "earliest",
        }

    def producer_kwargs(self) -> dict[str, Any]:
        """aiokafka ``AIOKafkaProducer`` keyword arguments (acks=all, no idempotence on Tansu)."""
        return {
            "bootstrap_servers": self.bootstrap,
            "acks": "all",
            "enable_idempotence": self.profile == "kafka",
            "linger_ms": 5,
        }


class MqttTls(BaseModel):
    """TLS to the MQTT broker (paho's ``tls_set``); a client certificate is optional.

    ``true``/``false`` in a file stand for ``{enabled: true|false}``.
    """

    enabled: bool = False
    #: CA certificate(s) the broker's certificate is checked against; empty: the system's CAs
    ca_file: str = ""
    #: client certificate and key (PEM), for brokers that require or map certificates
    cert_file: str = ""
    key_file: str = ""

    @model_validator(mode="before")
    @classmethod
    def _from_bool(cls, value: Any) -> Any:
        return {"enabled": value} if isinstance(value, bool) else value

    @model_validator(mode="after")
    def _files(self) -> "MqttTls":
        if bool(self.cert_file) != bool(self.key_file):
            raise ValueError("cert_file and key_file go together")
        for name in ("ca_file", "cert_file", "key_file"):
            path = getattr(self, name)
            if path and not Path(path).is_file():
                raise ValueError(f"{name} {path!r} does not exist")
        return self

    def tls_set_kwargs(self) -> dict[str, Any] | None:
        """Keyword arguments for paho's ``Client.tls_set``, or None when TLS is off."""
        if not self.enabled:
            return None
        return {"ca_certs": self.ca_file or None, "certfile": self.cert_file or None,
                "keyfile": self.key_file or None}


class MqttSettings(BaseModel):
    host: str = "127.0.0.1"
    port: int = Field(1883, ge=1, le=65535)
    username: str | None = None
    password: SecretStr | None = None
    tls: MqttTls = MqttTls()
    #: simulators: the credentials file (``cityeye devices export-acl``); each device publishes with its account
    device_credentials: str = ""

    def configure_client(self, client: Any, username: str | None = None, password: SecretStr | None = None) -> None:
        """Give a paho client these credentials (or ``username``/``password``) and TLS settings."""
        username, password = (username, password) if username else (self.username, self.password)
        if username:
            client.username_pw_set(username, password.get_secret_value() if password else None)
        tls = self.tls.tls_set_kwargs()
        if tls is not None:
            client.tls_set(**tls)
    client_id: str = "cityeye-gateway"
    #: what the gateway subscribes to: everything devices may publish under the namespace, so a
    #: message on a malformed topic is dead-lettered (``bad_topic``), never silently unheard
    topic_filters: list[str] = Field(default_factory=lambda: list(MQTT_TOPIC_FILTERS), min_length=1)
    #: the services' own output inside the namespace (the MQTT notifier's ``cityeye/out/...``):
    #: the gateway acknowledges and counts these, neither a reading nor a dead letter. Only a
    #: service account may publish there (``cityeye devices export-acl``)
    service_topics: list[str] = Field(default_factory=lambda: ["cityeye/out/#"])
    qos: Literal[0, 1, 2] = 1
    #: MQTT protocol of the gateway's session; ``"5"`` keeps the session for ``session_expiry_s``
    protocol: Literal["3.1.1", "5"] = "3.1.1"
    #: shared-subscription group: several gateways (each its own ``client_id``) subscribe to
    #: ``$share/<group>/<filter>`` for each of ``topic_filters`` and the broker hands each
    #: message to one of them; empty: plain subscriptions
    share_group: str = Field("", pattern=r"^[^/+#]*$")
    #: MQTT 5 only: how long the broker keeps the session (and queues QoS 1 messages) after a disconnect
    session_expiry_s: int = Field(7 * 86400, ge=0, le=0xFFFFFFFF)
    #: messages the broker may have in flight to the gateway at once (sent as MQTT 5 Receive Maximum;
    #: Mosquitto's own ``max_inflight_messages`` bounds it for 3.1.1 clients). As many as the gateway
    #: holds (``ingest.max_unacked``), so that under a backlog its batches (``ingest.produce_batch``)
    #: grow past 1000: fewer, larger Kafka produce requests (docs/contracts.md)
    receive_maximum: int = Field(5000, ge=1, le=65535)
    #: payloads larger than this are dead-lettered unread
    max_payload_bytes: int = Field(65536, ge=256)

    def shared(self, topic_filter: str) -> str:
        """``topic_filter`` as subscribed: its shared form ``$share/<group>/<filter>`` when ``share_group`` is set."""
        return f"$share/{self.share_group}/{topic_filter}" if self.share_group else topic_filter

    @property
    def subscriptions(self) -> list[str]:
        """The filters subscribed to: ``topic_filters``, in their shared form when ``share_group`` is set."""
        return [self.shared(f) for f in self.topic_filters]

    @model_validator(mode="before")
    @classmethod
    def _legacy_topic_filter(cls, data: Any) -> Any:
        """``topic_filter: <filter>`` (one filter, before 2026-12) still works: it is ``topic_filters: [<filter>]``."""
        if isinstance(data, dict) and "topic_filter" in data:
            data = dict(data)
            legacy = data.pop("topic_filter")
            data.setdefault("topic_filters", [legacy])
        return data

    @field_validator("topic_filters")
    @classmethod
    def _valid_filters(cls, v: list[str]) -> list[str]:
        for f in v:
            levels = f.split("/")
            if not f or "#" in levels[:-1] or any(("#" in lv or "+" in lv) and len(lv) > 1 for lv in levels):
                raise ValueError(f"{f!r} is not an MQTT topic filter")
        return v


class InfluxSettings(BaseModel):
    enabled: bool = True
    url: str = "http://127.0.0.1:8086"
    #: ``v2``: influxdb-client's v2 write API (InfluxDB 1.8+, 2.x, 3.x);
    #: ``v1``: the 1.x ``/write`` HTTP API.
    api: Literal["v1", "v2"] = "v2"
    org: str = "cityeye"
    bucket: str = "cityeye"
    token: SecretStr | None = None
    #: v1 API only
    database: str = "cityeye"
    #: v1 API only; empty = the database's default retention policy
    retention_policy: str = ""
    username: str | None = None
    password: SecretStr | None = None
    batch_size: int = Field(500, ge=1)
    flush_interval_s: float = Field(1.0, gt=0)


class WebhookSettings(BaseModel):
    url: str | None = None
    secret: SecretStr | None = None
    timeout_s: float = Field(5.0, gt=0)
    max_attempts: int = Field(8, ge=1)
    backoff_initial_s: float = Field(0.5, gt=0)
    backoff_max_s: float = Field(60.0, gt=0)


class MetricsSettings(BaseModel):
    """Where a process serves its Prometheus metrics (``/metrics``; docs/metrics.md)."""

    #: the exposition port of this process; 0: no metrics server (each process needs its own port)
    port: int = Field(0, ge=0, le=65535)
    #: the address the metrics server binds (``0.0.0.0`` in containers)
    host: str = "127.0.0.1"


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="CITYEYE_", env_nested_delimiter="__", extra="forbid")

    kafka: KafkaSettings = KafkaSettings()
    mqtt: MqttSettings = MqttSettings()
    influx: InfluxSettings = InfluxSettings()
    webhook: WebhookSettings = WebhookSettings()
    ingest: IngestSettings = IngestSettings()
    metrics: MetricsSettings = MetricsSettings()
    #: sensor registry YAML; empty = the default the program declares (cityeye.sensor_registry.set_default_registry)
    registry: str = ""
    #: kinds file declaring sensor kinds beyond the bundled ones (docs/kinds.md); empty = the bundled kinds
    kinds: str = ""
    #: rules file changing the built-in detector rules (docs/tuning.md); empty = the built-in rules
    rules: str = ""
    #: worker: seconds between checks of the rules file for changes (0: only on SIGHUP)
    rules_check_s: float = Field(5.0, ge=0)
    #: where processes keep local state (dispatcher state, detector snapshots)
    state_dir: str = "var/state"
    #: worker: how many readings' worth of detector state between snapshots
    snapshot_every: int = Field(200, ge=1)

    @field_validator("registry", "rules", "kinds")
    @classmethod
    def _file_exists(cls, v: str, info: Any) -> str:
        if v and not Path(v).is_file():
            raise ValueError(f"{info.field_name} file {v!r} does not exist")
        return v

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        # environment overrides the YAML file, which arrives as init kwargs
        return env_settings, init_settings, file_secret_settings


def load_settings(path: str | os.PathLike | None = None, **overrides: Any) -> Settings:
    """Settings from ``path`` (or ``$CITYEYE_CONFIG``), the environment and overrides.

    The kinds file the settings name (``kinds``) is declared for this
    process (:func:`cityeye.kinds.use_kinds_file`), so every tool started
    from settings knows its kinds. Raises :class:`ConfigError` naming the
    file and the field at fault (a :class:`~cityeye.kinds.KindsError` for
    the kinds file).
    """
    path = path or os.environ.get("CITYEYE_CONFIG") or None
    data: dict[str, Any] = {}
    where = "environment"
    if path:
        where = str(path)
        try:
            loaded = yaml.safe_load(Path(path).read_text(encoding="utf-8"))
        except OSError as exc:
            raise ConfigError(f"{path}: cannot read config file: {exc.strerror}") from None
        except yaml.YAMLError as exc:
            raise ConfigError(f"{path}: not valid YAML: {exc}") from None
        if loaded is not None and not isinstance(loaded, dict):
            raise ConfigError(f"{path}: top level must be a mapping of sections")
        data = loaded or {}
    for key, value in overrides.items():
        section, _, field = key.partition("__")
        if field:
            data.setdefault(section, {})[field] = value
        else:
            data[key] = value
    try:
        settings = Settings(**data)
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in err['loc'])}: {err['msg'].removeprefix('Value error, ')}" for err in exc.errors()
        )
        raise ConfigError(f"{where}: invalid configuration: {problems}") from None
    use_kinds_file(settings.kinds)
    return settings
