"""The device-health record: one device's traffic as the gateway saw it.

The gateway keeps per-device counters (:mod:`ingest.device_health`) and
publishes one :class:`DeviceHealth` per registered sensor every
``ingest.health_interval_s`` to Kafka :data:`TOPIC_DEVICES_HEALTH`, keyed by
sensor id; the dispatcher keeps the latest per device and serves them at
``GET /api/v1/devices`` (docs/contracts.md, "Device health").
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, fields

__all__ = ["TOPIC_DEVICES_HEALTH", "DeviceHealth"]

#: latest health of each device, keyed by sensor id (1 partition)
TOPIC_DEVICES_HEALTH = "devices.health"


@dataclass(frozen=True)
class DeviceHealth:
    """Counters since the gateway started and rates over the last interval.

    Times are epoch seconds of the gateway clock (``None``: never). Rates
    are per second over the interval ending at ``updated_at``.
    """

    sensor_id: str
    kind: str
    district: str
    #: last MQTT message from the device, whatever became of it
    last_seen: float | None
    #: last message that gave a reading
    last_reading_at: float | None
    messages: int
    readings: int
    dead_letters: int
    rate_limited: int
    message_rate_per_s: float
    dead_letter_rate_per_s: float
    #: the last dead letter's reason, ``"<code>: <detail>"`` (at most 300 characters)
    last_reason: str | None
    last_reason_at: float | None
    updated_at: float
    #: the gateway's MQTT client id (several gateways: each reports what it saw)
    gateway: str

    def to_json(self) -> bytes:
        return json.dumps(asdict(self), separators=(",", ":"), allow_nan=False).encode()

    @classmethod
    def from_json(cls, raw: bytes | str) -> "DeviceHealth":
        """Parse a record; raises ``ValueError`` (or ``TypeError``/``KeyError``) when it is not one."""
        data = json.loads(raw)
        if not isinstance(data, dict):
            raise ValueError("a device-health record is a JSON object")
        return cls(**{f.name: data[f.name] for f in fields(cls)})

    def to_api(self) -> dict:
        return asdict(self)
