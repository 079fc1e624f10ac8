"""The ingest gateway's settings (the ``ingest`` section): validation limits, flow control, rate limit.

Re-exported by :mod:`cityeye.config`, where :class:`~cityeye.config.Settings`
reads them from a file and ``CITYEYE_INGEST__<FIELD>`` environment variables
(``CITYEYE_INGEST__RATE_LIMIT__MESSAGES_PER_S`` for the rate limit).
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import BaseModel, Field, field_validator

__all__ = ["IngestSettings", "RateLimitSettings"]


class RateLimitSettings(BaseModel):
    """Per-device token bucket of the gateway: ``messages_per_s`` sustained, ``burst`` at once.

    ``messages_per_s`` 0 (the default) turns it off, as brokers do (EMQX's
    ``messages_rate`` is unlimited unless set): a backlog redelivered after a
    gateway restart or a replay arrives as a burst by design. Set it on a live
    gateway well above the fastest device's rate (a gauge every 5 s: 1/s, burst 20).
    """

    messages_per_s: float = Field(0.0, ge=0)
    burst: int = Field(20, ge=1)

    @property
    def enabled(self) -> bool:
        return self.messages_per_s > 0


class IngestSettings(BaseModel):
    """The ingest gateway's validation limits and flow control."""

    #: readings stamped further ahead of the gateway clock are dead-lettered
    max_future_s: float = Field(300.0, ge=0)
    #: readings older than this are dead-lettered (default 30 days); 0: any age (replays of old data)
    max_age_s: float = Field(30 * 86400.0, ge=0)
    #: IANA time zone (``Asia/Shanghai``, ``Europe/London``, ``UTC``) a timestamp without a UTC
    #: offset is read in; empty: such readings are dead-lettered (``naive_timestamp``)
    timezone: str = ""
    #: most readings one MQTT message (a JSON array) may carry
    max_batch_items: int = Field(1000, ge=1)
    #: most fields in one reading's ``values``
    max_fields: int = Field(64, ge=1)
    #: MQTT messages received but not yet acknowledged (backpressure bound)
    max_unacked: int = Field(5000, ge=1)
    #: MQTT messages validated and produced together, at most (a batch takes what has arrived: it grows
    #: only under a backlog, so no added latency when the stream is light)
    produce_batch: int = Field(2000, ge=1)
    #: ms the intake waits for more messages once a light stream's first one has arrived (it had
    #: found none waiting): fewer, larger batches, so less CPU per message (Kafka records and
    #: requests, acks, wake-ups), for at most this much latency; 0: take each wake-up's messages at once
    intake_linger_ms: float = Field(5.0, ge=0, le=1000)
    #: most readings in one aggregated Kafka record (cityeye/reading_records.py); 1: one record
    #: per reading, keyed by sensor (the format of gateways before aggregation)
    aggregate_max_readings: int = Field(500, ge=1, le=100_000)
    #: an aggregated record is closed before its value grows past this many bytes
    aggregate_max_bytes: int = Field(256 * 1024, ge=1024)
    #: produced batches awaiting Kafka acks at once (acks to MQTT stay in order)
    produce_window: int = Field(8, ge=1)
    #: the gateway producer's ``linger_ms``: 0, the intake batches already and every ms of Kafka
    #: latency holds MQTT messages unacknowledged (the broker's in-flight window)
    producer_linger_ms: int = Field(0, ge=0)
    #: the gateway producer's ``max_batch_size`` (bytes of one partition's records per produce request):
    #: several aggregated records (``aggregate_max_bytes``) per batch; with 16 KiB each aggregate was a
    #: batch of its own and Tansu spent twice the CPU per reading
    producer_max_batch_bytes: int = Field(512 * 1024, ge=1024)
    #: seconds between counter log lines (0: never)
    stats_interval_s: float = Field(60.0, ge=0)
    #: a field its kind does not declare: ``reject`` (dead letter ``unknown_field``), ``drop``
    #: (left out of the reading) or ``keep`` (passed on, checked only for being a finite number)
    unknown_fields: Literal["reject", "drop", "keep"] = "reject"
    #: per-device token bucket; excess messages are dead-lettered (``rate_limited``)
    rate_limit: RateLimitSettings = RateLimitSettings()
    #: seconds between device-health records on Kafka ``devices.health`` (0: none)
    health_interval_s: float = Field(10.0, ge=0)
    #: seconds between intake probes: the gateway tells the workers, on every readings partition, how far
    #: its intake is complete, so a starved or paused gateway's sensors are not called silent
    #: (ingest/intake_probe.py; 0: none, the workers count the wall clock as with an older gateway)
    intake_progress_interval_s: float = Field(1.0, ge=0)
    #: decode SenML (RFC 8428) packs published on cityeye/<district>/senml/<sensor_id> (docs/device-formats.md)
    senml: bool = True
    #: vendor payload mapping files (docs/device-formats.md), tried in this order before SenML
    mappings: list[str] = []

    @field_validator("mappings")
    @classmethod
    def _mapping_files_exist(cls, v: list[str]) -> list[str]:
        missing = [p for p in v if not Path(p).is_file()]
        if missing:
            raise ValueError(f"mapping file {missing[0]!r} does not exist")
        return v

    @field_validator("timezone")
    @classmethod
    def _known_zone(cls, v: str) -> str:
        if v:
            try:
                ZoneInfo(v)
            except (ZoneInfoNotFoundError, ValueError):
                raise ValueError(f"unknown time zone {v!r} (use an IANA name such as Asia/Shanghai)") from None
        return v

    @property
    def naive_tz(self) -> ZoneInfo | None:
        """The zone naive timestamps are read in (``None``: they are refused)."""
        return ZoneInfo(self.timezone) if self.timezone else None
