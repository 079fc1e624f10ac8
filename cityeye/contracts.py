"""The data contracts every CityEye stage shares.

One module so that the gateway, the stream processors, the sinks and the
simulators agree on topic names, payload shapes, units and identifiers.
See ``docs/contracts.md`` for the prose version.

MQTT
    Topic ``cityeye/<district>/<kind>/<sensor_id>``; ``kind`` is one of the
    declared kinds (:mod:`cityeye.kinds`: ``cityeye/kinds.yaml`` and the
    ``kinds`` setting's file). Payload: JSON ``{"ts": <RFC 3339 string | epoch ms>,
    "values": {...}}`` or a JSON array of such objects (a device's batch).

Kafka
    ``readings.<kind>`` keyed by sensor id (a :class:`Reading` as JSON),
    ``readings.deadletter`` (a :class:`DeadLetter`), ``alerts.events`` keyed
    by alert id (an :class:`AlertEvent`).
"""

from __future__ import annotations

import base64
import hashlib
import json
import math
import re
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone, tzinfo
from typing import Any

from cityeye.device_health import TOPIC_DEVICES_HEALTH
from cityeye.kinds import FieldSpec, declared, kind_names

__all__ = [
    "KINDS",
    "FIELDS",
    "SEVERITIES",
    "SEVERITY_RANK",
    "MQTT_TOPIC_FILTERS",
    "TOPIC_READINGS",
    "TOPIC_DEADLETTER",
    "TOPIC_ALERTS",
    "TOPIC_ALERTS_DEADLETTER",
    "TOPIC_ALERTS_GROUPED",
    "TOPIC_NOTIFICATIONS_DEADLETTER",
    "TOPIC_PARTITIONS",
    "FieldSpec",
    "kind_fields",
    "Reading",
    "DeadLetter",
    "AlertEvent",
    "readings_topic",
    "all_topics",
    "mqtt_topic",
    "alert_id_for",
    "format_ts",
    "parse_ts",
    "NaiveTimestampError",
    "to_json",
    "scrub_text",
    "decode_alert_event",
]

#: The bundled sensor kinds (``cityeye/kinds.yaml``), each with its own Kafka topic.
#: Kinds added by a kinds file are in :func:`cityeye.kinds.kind_names`, which
#: is what the gateway, the worker and the registry read.
KINDS: tuple[str, ...] = kind_names()

#: Warning severities, lowest first (China's four-colour warning signals).
SEVERITIES: tuple[str, ...] = ("blue", "yellow", "orange", "red")
SEVERITY_RANK: dict[str, int] = {s: i + 1 for i, s in enumerate(SEVERITIES)}

#: what the gateway subscribes to by default: everything under the namespace (also with the
#: common mistake of a leading ``/``), so a malformed topic is dead-lettered, never unheard
MQTT_TOPIC_FILTERS: tuple[str, ...] = ("cityeye/#", "/cityeye/#")

TOPIC_READINGS = "readings.{kind}"
TOPIC_DEADLETTER = "readings.deadletter"
TOPIC_ALERTS = "alerts.events"
#: alert events a sink could not deliver or decode (see alerts/sinks/deadletter.py)
TOPIC_ALERTS_DEADLETTER = "alerts.deadletter"
#: notifications the dispatcher gave up on (JSON: reason, receiver, notification)
TOPIC_NOTIFICATIONS_DEADLETTER = "notifications.deadletter"
#: alert events re-keyed by shard key (district) for several dispatchers, plus their API actions
TOPIC_ALERTS_GROUPED = "alerts.grouped"

#: Partition counts of the bundled kinds' and the other topics; topics are
#: pre-created with these (never auto-created). :func:`all_topics` adds the
#: topics of kinds declared by a kinds file.
TOPIC_PARTITIONS: dict[str, int] = {
    **{TOPIC_READINGS.format(kind=k): spec.partitions for k, spec in declared().items()},
    TOPIC_DEADLETTER: 1,
    TOPIC_ALERTS: 4,
    TOPIC_NOTIFICATIONS_DEADLETTER: 1,
    TOPIC_ALERTS_DEADLETTER: 1,
    TOPIC_ALERTS_GROUPED: 4,
    TOPIC_DEVICES_HEALTH: 1,
}


#: Known quantities per bundled kind (``cityeye/kinds.yaml``); :func:`kind_fields`
#: gives those of any declared kind. Unknown fields are kept (not rejected)
#: but are only checked for being finite numbers.
FIELDS: dict[str, dict[str, FieldSpec]] = {k: dict(spec.fields) for k, spec in declared().items()}


def kind_fields(kind: str) -> dict[str, FieldSpec]:
    """The known fields of a declared kind (empty for an unknown kind)."""
    spec = declared().get(kind)
    return dict(spec.fields) if spec is not None else {}


def readings_topic(kind: str) -> str:
    """Kafka topic of validated readings of ``kind``."""
    if kind not in kind_names():
        raise ValueError(f"unknown kind {kind!r}; expected one of {', '.join(kind_names())}")
    return TOPIC_READINGS.format(kind=kind)


def all_topics() -> dict[str, int]:
    """Every topic CityEye uses, with its partition count (the declared kinds' included)."""
    return {**TOPIC_PARTITIONS, **{readings_topic(k): spec.partitions for k, spec in declared().items()}}


def mqtt_topic(district: str, kind: str, sensor_id: str) -> str:
    return f"cityeye/{district}/{kind}/{sensor_id}"


def format_ts(epoch_s: float) -> str:
    """RFC 3339 UTC with milliseconds, e.g. ``2026-07-01T12:00:00.000Z``."""
    dt = datetime.fromtimestamp(epoch_s, tz=timezone.utc)
    return dt.strftime("%Y-%m-%dT%H:%M:%S.") + f"{dt.microsecond // 1000:03d}Z"


class NaiveTimestampError(ValueError):
    """A timestamp string without a UTC offset, and no time zone to read it in."""


def parse_ts(value: Any, naive_tz: tzinfo | None = None) -> float:
    """Epoch seconds from an RFC 3339 string or epoch milliseconds.

    A string without a UTC offset (``2025-08-16T00:00:00``) is read in
    ``naive_tz`` if given (an ambiguous time in the hour a clock goes back
    takes the earlier offset); without one it raises
    :class:`NaiveTimestampError`. Raises :class:`ValueError` with a reason
    for anything else (booleans, NaN, garbage).
    """
    if isinstance(value, bool):
        raise ValueError("ts must be an RFC 3339 string or epoch milliseconds, not a boolean")
    if isinstance(value, (int, float)):
        if not math.isfinite(value):
            raise ValueError("ts is not a finite number")
        return float(value) / 1000.0
    if isinstance(value, str):
        text = value.strip()
        if len(text) > 64:
            raise ValueError("ts string too long")
        if text.endswith(("Z", "z")):
            text = text[:-1] + "+00:00"
        try:
            dt = datetime.fromisoformat(text)
        except ValueError:
            raise ValueError(f"ts {value[:40]!r} is not RFC 3339") from None
        if dt.tzinfo is None:
            if naive_tz is None:
                raise NaiveTimestampError(f"ts {value[:40]!r} has no UTC offset")
            dt = dt.replace(tzinfo=naive_tz)
        return dt.timestamp()
    raise ValueError(f"ts must be an RFC 3339 string or epoch milliseconds, not {type(value).__name__}")


def to_json(obj: Any) -> bytes:
    """Compact UTF-8 JSON of a contract dataclass (or a plain dict)."""
    data = asdict(obj) if hasattr(obj, "__dataclass_fields__") else obj
    # a lone surrogate (JSON "\\ud800" decoded by Python) is written back as its JSON escape
    return json.dumps(data, separators=(",", ":"), ensure_ascii=False, allow_nan=False).encode(
        "utf-8", errors="backslashreplace")


@dataclass
class Reading:
    """A validated reading, as the gateway writes it to ``readings.<kind>``.

    ``ts`` is the device's measurement time and ``received_at`` the gateway's
    clock, both epoch seconds; ``values`` holds finite floats only.
    """

    sensor_id: str
    kind: str
    district: str
    ts: float
    values: dict[str, float]
    received_at: float
    mqtt_topic: str

    @classmethod
    def from_json(cls, raw: bytes | str) -> "Reading":
        d = json.loads(raw)
        return cls(
            sensor_id=str(d["sensor_id"]),
            kind=str(d["kind"]),
            district=str(d["district"]),
            ts=float(d["ts"]),
            values={str(k): float(v) for k, v in d["values"].items()},
            received_at=float(d["received_at"]),
            mqtt_topic=str(d.get("mqtt_topic", "")),
        )


@dataclass
class DeadLetter:
    """A payload the gateway refused, with the reason, on ``readings.deadletter``.

    ``payload`` is the raw payload decoded as UTF-8 with replacement
    characters where it was not UTF-8 (``payload_b64`` keeps the exact bytes).
    """

    mqtt_topic: str
    reason: str
    received_at: float
    payload: str
    payload_b64: str
    sensor_id: str | None = None

    @classmethod
    def of(cls, payload: bytes, mqtt_topic: str, reason: str, received_at: float,
           sensor_id: str | None = None, *, max_text_chars: int | None = None) -> "DeadLetter":
        """The one dead-letter builder: ``payload`` kept exactly (base64) and readably.

        ``max_text_chars`` bounds the readable ``payload`` text (the exact
        bytes stay whole in ``payload_b64``). Used by the gateway
        (``ingest.validation``) and the worker (``streams.models``).
        """
        text = payload.decode("utf-8", errors="replace")
        return cls(
            mqtt_topic=mqtt_topic,
            reason=reason,
            received_at=received_at,
            payload=text if max_text_chars is None else text[:max_text_chars],
            payload_b64=base64.b64encode(payload).decode("ascii"),
            sensor_id=sensor_id,
        )

    @classmethod
    def from_json(cls, raw: bytes | str) -> "DeadLetter":
        return cls(**json.loads(raw))


def alert_id_for(sensor_id: str, rule: str, started_at: float) -> str:
    """Deterministic alert id: same sensor, rule and episode start, same id.

    A replay or a retried computation therefore yields the same id, which
    downstream consumers use for idempotency.
    """
    key = f"{sensor_id}|{rule}|{round(started_at * 1000)}".encode()
    return hashlib.sha256(key).hexdigest()[:24]


@dataclass
class AlertEvent:
    """An alert episode's state change, on ``alerts.events`` keyed by ``alert_id``.

    ``state`` is ``firing`` or ``resolved``; ``severity`` one of
    :data:`SEVERITIES`. ``event_id`` identifies this one change (the alert id
    plus ``updated_at`` and the state/severity), so it serves as an
    idempotency key for forwarding.
    """

    alert_id: str
    sensor_id: str
    kind: str
    district: str
    rule: str
    severity: str
    state: str
    started_at: float
    updated_at: float
    value: float | None
    threshold: float | None
    message: str
    event_id: str = ""
    labels: dict[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.severity not in SEVERITY_RANK:
            raise ValueError(f"severity {self.severity!r} not in {SEVERITIES}")
        if self.state not in ("firing", "resolved"):
            raise ValueError(f"state {self.state!r} must be 'firing' or 'resolved'")
        if not self.event_id:
            key = f"{self.alert_id}|{self.state}|{self.severity}|{round(self.updated_at * 1000)}"
            self.event_id = hashlib.sha256(key.encode()).hexdigest()[:32]

    @classmethod
    def from_json(cls, raw: bytes | str) -> "AlertEvent":
        d = json.loads(raw)
        return cls(**{k: d[k] for k in cls.__dataclass_fields__ if k in d})


_SURROGATE = re.compile("[\ud800-\udfff]")
_ALERT_TEXT_FIELDS = ("alert_id", "sensor_id", "kind", "district", "rule", "severity", "state", "message")
_MAX_ALERT_TEXT = 2000


def scrub_text(obj: Any) -> Any:
    """``obj`` with lone surrogates in every string replaced by U+FFFD.

    JSON can carry ``"\\ud800"``, which Python decodes into a string that
    cannot be encoded as UTF-8; every channel and sink encodes to UTF-8.
    """
    if isinstance(obj, str):
        return _SURROGATE.sub("\ufffd", obj) if _has_surrogate(obj) else obj
    if isinstance(obj, dict):
        return {scrub_text(k): scrub_text(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return type(obj)(scrub_text(v) for v in obj)
    return obj


def _has_surrogate(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return True
    return False


def _finite_number(d: dict, key: str, optional: bool = False) -> float | None:
    value = d.get(key)
    if value is None and optional:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise ValueError(f"alert event: {key} must be a finite number" + (" or null" if optional else ""))
    return float(value)


def decode_alert_event(raw: bytes | str | None) -> AlertEvent:
    """A valid :class:`AlertEvent` from a Kafka record value, strictly checked.

    Every consumer of ``alerts.events`` decodes through this, so hostile or
    broken records are refused the same way everywhere: :class:`ValueError`
    naming the problem (to be dead-lettered by the caller). Lone surrogates
    in text (valid JSON, not encodable as UTF-8) become U+FFFD.
    """
    if raw is None:
        raise ValueError("empty record (no value)")
    try:
        d = json.loads(raw)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ValueError(f"alert event is not JSON: {exc}") from None
    if not isinstance(d, dict):
        raise ValueError("alert event is not a JSON object")
    d = scrub_text(d)
    for key in _ALERT_TEXT_FIELDS:
        v = d.get(key)
        if not isinstance(v, str) or (not v and key != "message") or len(v) > _MAX_ALERT_TEXT:
            what = "a string" if key == "message" else "a non-empty string"
            raise ValueError(f"alert event: {key} must be {what} of at most {_MAX_ALERT_TEXT} chars")
    labels = d.get("labels") or {}
    if not isinstance(labels, dict) or not all(isinstance(k, str) and isinstance(v, str) for k, v in labels.items()):
        raise ValueError("alert event: labels must map strings to strings")
    event_id = d.get("event_id", "")
    if not isinstance(event_id, str):
        raise ValueError("alert event: event_id must be a string")
    numbers = {"started_at": _finite_number(d, "started_at"), "updated_at": _finite_number(d, "updated_at"),
               "value": _finite_number(d, "value", optional=True),
               "threshold": _finite_number(d, "threshold", optional=True)}
    try:
        return AlertEvent(**{k: d[k] for k in _ALERT_TEXT_FIELDS}, **numbers, event_id=event_id, labels=dict(labels))
    except ValueError as exc:  # severity/state outside the contract
        raise ValueError(f"invalid alert event: {exc}") from None
