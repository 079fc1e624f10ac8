"""Pure validation of one MQTT message into readings and dead letters.

:func:`validate_message` takes the raw bytes, the MQTT topic, the sensor
registry, the gateway clock and the limits, and returns one outcome per
reading the message carried: a :class:`~cityeye.contracts.Reading` or a
:class:`~cityeye.contracts.DeadLetter`. It never raises for bad input and
does no I/O, so it is exhaustively unit-tested on its own.

Every dead-letter reason reads ``"<code>: <detail>"``; the codes are
:data:`REASONS` (counted per code by the gateway, listed in
``docs/contracts.md``). Checks, in order: topic shape, payload size (before
anything is parsed), UTF-8, JSON (no ``NaN``/``Infinity`` literals), shape
(an object or a non-empty array of objects, at most ``max_batch_items``),
registry (known sensor, district and kind as registered), then per reading:
``ts`` (parsable; without a UTC offset only if ``ingest.timezone`` says how
to read it; not absurdly far in the future or past, unless
``ingest.max_age_s`` is 0: any age, for replays) and ``values`` (a
non-empty object of finite numbers within their physical ranges; a field
the kind does not declare is refused, dropped or kept as
``ingest.unknown_fields`` says: ``reject``, the default, ``drop`` or ``keep``).

The gateway adds two codes of its own (:data:`GATEWAY_REASONS`):
``rate_limited`` and ``internal_error``.
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass
from collections.abc import Callable
from datetime import tzinfo
from typing import Any, Literal

import orjson

from cityeye.contracts import DeadLetter, NaiveTimestampError, Reading, parse_ts
from cityeye.kinds import kind_names, kind_spec
from cityeye.sensor_registry import SensorRegistry
from ingest.bounded_memo import BoundedMemo
from ingest.decoded import DecodedItem, FormatRefused

__all__ = [
    "REASONS",
    "GATEWAY_REASONS",
    "UnknownFields",
    "Limits",
    "Outcome",
    "validate_message",
    "validate_decoded",
    "reason_code",
    "item_json",
]

#: Dead-letter reason codes and what each means.
REASONS: dict[str, str] = {
    "bad_topic": "MQTT topic is not cityeye/<district>/<kind>/<sensor_id> with a known kind",
    "too_large": "payload larger than mqtt.max_payload_bytes (checked before parsing)",
    "not_utf8": "payload is not valid UTF-8",
    "invalid_json": "payload is not JSON (NaN/Infinity literals count as invalid)",
    "bad_shape": "payload is not an object or a non-empty array of objects",
    "batch_too_large": "array carries more than ingest.max_batch_items readings",
    "unknown_sensor": "sensor id not in the registry",
    "registry_mismatch": "topic district or kind differs from the registry's",
    "bad_ts": "ts missing or not an RFC 3339 string with offset / epoch milliseconds",
    "naive_timestamp": "ts has no UTC offset and ingest.timezone is not set",
    "ts_in_future": "ts further ahead of the gateway clock than ingest.max_future_s",
    "ts_too_old": "ts older than ingest.max_age_s",
    "bad_values": "values missing, not an object, empty, or with too many / bad field names",
    "not_a_number": "a value is not a finite JSON number (strings, booleans, null, NaN, Infinity)",
    "unknown_field": "a field the kind does not declare (ingest.unknown_fields: reject), or none left after drop",
    "out_of_range": "a field outside its physical range (cityeye/kinds.yaml, the kinds file)",
}

#: Codes the gateway itself gives, besides the validation outcomes of :data:`REASONS`.
GATEWAY_REASONS: dict[str, str] = {
    "rate_limited": "the device sent more than ingest.rate_limit allows (token bucket per sensor)",
    "internal_error": "handling the message failed unexpectedly (the exception class is in the detail)",
}

#: What happens to a field its kind does not declare (``ingest.unknown_fields``).
UnknownFields = Literal["reject", "drop", "keep"]

_TOKEN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")
_FIELD_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,63}$")
#: how much of a refused payload a dead letter keeps when it is oversized
_OVERSIZE_KEEP = 1024


@dataclass(frozen=True)
class Limits:
    """Validation limits (see :class:`cityeye.config.IngestSettings`)."""

    max_payload_bytes: int = 65536
    max_future_s: float = 300.0
    #: 0: readings of any age are accepted
    max_age_s: float = 30 * 86400.0
    max_batch_items: int = 1000
    max_fields: int = 64
    #: the zone a timestamp without a UTC offset is read in (``None``: refused)
    naive_tz: tzinfo | None = None
    #: fields the kind does not declare: dead-lettered, dropped from the reading, or kept unchecked
    unknown_fields: UnknownFields = "reject"

    @classmethod
    def from_settings(cls, settings: Any) -> "Limits":
        """Limits from a :class:`cityeye.config.Settings`."""
        ing = settings.ingest
        return cls(settings.mqtt.max_payload_bytes, ing.max_future_s, ing.max_age_s,
                   ing.max_batch_items, ing.max_fields, ing.naive_tz, ing.unknown_fields)


Outcome = Reading | DeadLetter


class _Refused(Exception):
    """Internal: a check failed; ``code`` is one of :data:`REASONS`."""

    def __init__(self, code: str, detail: str) -> None:
        super().__init__(f"{code}: {detail}")
        self.code = code


def reason_code(reason: str) -> str:
    """The code part of a dead-letter reason (``"bad_ts: ..."`` -> ``"bad_ts"``)."""
    return reason.split(":", 1)[0]




def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not valid JSON")


#: ``json.loads(text, parse_constant=_reject_constant)`` without building a decoder per message
_JSON = json.JSONDecoder(parse_constant=_reject_constant)
#: a run of digits orjson might read differently (an integer beyond 64 bits becomes a float there)
_LONG_DIGITS = re.compile(rb"[0-9]{20}")


class _TopicParts:
    """``(district, kind, sensor_id)`` per topic, remembered in a :class:`BoundedMemo` per set of declared kinds."""

    def __init__(self) -> None:
        self._kinds: tuple[str, ...] | None = None
        self._memo = BoundedMemo(self._parts)

    def __call__(self, topic: str) -> tuple[str, str, str]:
        kinds = kind_names()
        if kinds != self._kinds:  # kinds declared (or a test's kinds gone): what a topic means changed
            self._kinds, self._memo = kinds, BoundedMemo(self._parts)
        parts = self._memo[topic]
        if isinstance(parts, _Refused):
            raise _Refused(parts.code, str(parts).split(": ", 1)[1])
        return parts

    def _parts(self, topic: str) -> tuple[str, str, str] | _Refused:
        """``(district, kind, sensor_id)`` of a contract topic, or why it is not one."""
        kinds = self._kinds
        parts = topic.split("/")
        if len(parts) != 4 or parts[0] != "cityeye":
            return _Refused("bad_topic", f"topic {topic[:100]!r} is not cityeye/<district>/<kind>/<sensor_id>")
        _, district, kind, sensor_id = parts
        if kind not in kinds:
            return _Refused("bad_topic", f"unknown kind {kind[:40]!r} in topic; expected one of {', '.join(kinds)}")
        for what, token in (("district", district), ("sensor id", sensor_id)):
            if not _TOKEN.match(token):
                return _Refused("bad_topic", f"{what} {token[:70]!r} in topic is not a 1-64 character token")
        return district, kind, sensor_id


#: a city's devices publish on a bounded set of topics; hostile ones cost at most the memo's bound
_split_topic = _TopicParts()
#: the kinds declare a bounded set of field names; a longer name than 64 characters is refused, never kept
_is_field_name = BoundedMemo(lambda name: _FIELD_NAME.match(name) is not None, size=4096, max_len=64)


def _parse_json(payload: bytes, limits: Limits) -> Any:
    if len(payload) > limits.max_payload_bytes:
        raise _Refused("too_large", f"payload of {len(payload)} bytes exceeds the limit of {limits.max_payload_bytes}")
    if not _LONG_DIGITS.search(payload):
        # fast path: orjson gives the same document as the decoder below for whatever it accepts
        # (valid UTF-8, no NaN/Infinity, no lone surrogate, numbers within 64 bits and finite)
        try:
            return orjson.loads(payload)
        except orjson.JSONDecodeError:
            pass  # the path below refuses it with its own reason, or accepts what orjson does not
    try:
        text = payload.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise _Refused("not_utf8", f"invalid UTF-8 at byte {exc.start}") from None
    try:
        if text.startswith("\ufeff"):  # what json.loads refuses before decoding
            raise json.JSONDecodeError("Unexpected UTF-8 BOM (decode using utf-8-sig)", text, 0)
        doc = _JSON.decode(text)
    except (ValueError, RecursionError) as exc:
        detail = str(exc) if isinstance(exc, ValueError) else "nested too deeply"
        raise _Refused("invalid_json", detail[:200]) from None
    return doc


def _parse_items(payload: bytes, limits: Limits) -> list[Any]:
    doc = _parse_json(payload, limits)
    if isinstance(doc, dict):
        return [doc]
    if isinstance(doc, list):
        if not doc:
            raise _Refused("bad_shape", "empty array")
        if len(doc) > limits.max_batch_items:
            raise _Refused("batch_too_large", f"{len(doc)} readings in one message; the limit is {limits.max_batch_items}")
        return doc
    raise _Refused("bad_shape", f"top level is a JSON {_json_type(doc)}, not an object or an array of objects")


def _check_ts(item: dict, now: float, limits: Limits) -> float:
    if "ts" not in item:
        raise _Refused("bad_ts", "ts is missing")
    try:
        ts = parse_ts(item["ts"], limits.naive_tz)
    except NaiveTimestampError as exc:
        raise _Refused("naive_timestamp", f"{exc}; set ingest.timezone or send an offset") from None
    except (ValueError, OverflowError, OSError) as exc:
        raise _Refused("bad_ts", str(exc)[:200]) from None
    if ts > now + limits.max_future_s:
        raise _Refused("ts_in_future", f"ts is {ts - now:.0f} s ahead of the gateway clock (limit {limits.max_future_s:.0f} s)")
    if limits.max_age_s and ts < now - limits.max_age_s:
        raise _Refused("ts_too_old", f"ts is {now - ts:.0f} s old (limit {limits.max_age_s:.0f} s)")
    return ts


def _declared_fields(kind: str) -> dict:
    """The fields ``kind`` declares, read-only (``contracts.kind_fields`` copies the kinds and the fields
    per call); empty for an unknown kind."""
    try:
        return kind_spec(kind).fields
    except ValueError:
        return {}


def _check_values(item: dict, kind: str, limits: Limits) -> dict[str, float]:
    raw = item.get("values")
    if not isinstance(raw, dict):
        raise _Refused("bad_values", "values is missing or not an object")
    if not raw:
        raise _Refused("bad_values", "values is empty")
    if len(raw) > limits.max_fields:
        raise _Refused("bad_values", f"{len(raw)} fields; the limit is {limits.max_fields}")
    specs = _declared_fields(kind)
    values: dict[str, float] = {}
    for name, value in raw.items():
        if not _is_field_name[name]:
            raise _Refused("bad_values", f"field name {name[:70]!r} is not an identifier of up to 64 characters")
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise _Refused("not_a_number", f"{name} is a JSON {_json_type(value)}, not a number")
        try:
            number = float(value)
        except OverflowError:
            raise _Refused("not_a_number", f"{name} is too large to be a finite number") from None
        if not math.isfinite(number):
            raise _Refused("not_a_number", f"{name} is not finite")
        spec = specs.get(name)
        if spec is None:
            if limits.unknown_fields == "reject":
                raise _Refused("unknown_field", f"{name} is not a field of {kind} "
                                                f"(declared: {', '.join(specs) or 'none'})")
            if limits.unknown_fields == "drop":
                continue
        elif not spec.low <= number <= spec.high:
            raise _Refused("out_of_range", f"{name}={number:g} outside [{spec.low:g}, {spec.high:g}] ({spec.description})")
        values[name] = number
    if not values:
        raise _Refused("unknown_field", f"no field of {kind} left after dropping undeclared ones "
                                        f"(declared: {', '.join(specs) or 'none'})")
    return values


def item_json(item: Any) -> bytes:
    """A batch item's JSON as UTF-8 bytes, whatever strings it holds.

    JSON can carry a lone surrogate (``"\\ud800"``) that Python decodes into
    a string UTF-8 cannot encode; ``backslashreplace`` writes it back as the
    same JSON escape, so the bytes are valid UTF-8 and parse to the same item.
    """
    return json.dumps(item, ensure_ascii=False).encode("utf-8", errors="backslashreplace")


def _json_type(value: Any) -> str:
    names = {str: "string", bool: "boolean", type(None): "null", list: "array", dict: "object", int: "number", float: "number"}
    return names.get(type(value), type(value).__name__)


def validate_message(payload: bytes, topic: str, registry: SensorRegistry, now: float,
                     limits: Limits = Limits()) -> list[Outcome]:
    """Validate one MQTT message; one :class:`Reading` or :class:`DeadLetter` per reading.

    A message refused as a whole (topic, size, encoding, JSON, shape,
    registry) yields a single dead letter with the whole payload (the first
    1 KiB when oversized); a batch yields one outcome per item, in order,
    bad items dead-lettered with the item's own JSON.
    """
    sensor_id: str | None = None
    try:
        district, kind, sensor_id = _split_topic(topic)
        items = _parse_items(payload, limits)
        sensor = registry.get(sensor_id)
        if sensor is None:
            raise _Refused("unknown_sensor", f"sensor {sensor_id!r} is not in the registry")
        if not sensor.agrees_with(kind, district):
            raise _Refused("registry_mismatch", f"topic says {district}/{kind}, the registry says "
                                                f"{sensor.district}/{sensor.kind} for sensor {sensor_id!r}")
    except _Refused as exc:
        kept = payload[:_OVERSIZE_KEEP] if exc.code == "too_large" else payload
        return [DeadLetter.of(kept, topic, str(exc), now, sensor_id)]

    outcomes: list[Outcome] = []
    batch = len(items) > 1 or payload.lstrip()[:1] == b"["
    for index, item in enumerate(items):
        where = f"batch item {index}: " if batch else ""
        try:
            if not isinstance(item, dict):
                raise _Refused("bad_shape", f"a JSON {_json_type(item)}, not an object")
            ts = _check_ts(item, now, limits)
            values = _check_values(item, kind, limits)
        except _Refused as exc:
            reason = f"{exc.code}: {where}{str(exc).split(': ', 1)[1]}"
            raw = item_json(item) if batch else payload
            outcomes.append(DeadLetter.of(raw, topic, reason, now, sensor_id))
            continue
        outcomes.append(Reading(sensor_id=sensor_id, kind=kind, district=district, ts=ts,
                                values=values, received_at=now, mqtt_topic=topic))
    return outcomes


def validate_decoded(payload: bytes, topic: str, decode: Callable[[Any], list[DecodedItem]],
                     registry: SensorRegistry, now: float, limits: Limits = Limits(),
                     sensor_hint: str | None = None) -> list[Outcome]:
    """Validate one message of a device format (SenML, a vendor mapping; ``ingest/formats.py``).

    The payload is checked for size, UTF-8 and JSON as any message, then
    ``decode(document)`` turns it into canonical reading items, each checked
    as a plain reading is (registry, ``ts``, ``values``) against its
    sensor's kind. A payload the decoder refuses as a whole gives one dead
    letter (``sensor_hint`` as its sensor id); each item refused, by the
    decoder or here, its own, reason ``<code>: <where>: <detail>``, with the
    part of the payload it came from.
    """
    try:
        items = decode(_parse_json(payload, limits))
    except (_Refused, FormatRefused) as exc:
        kept = payload[:_OVERSIZE_KEEP] if exc.code == "too_large" else payload
        return [DeadLetter.of(kept, topic, str(exc), now, sensor_hint)]
    outcomes: list[Outcome] = []
    for decoded in items:
        try:
            if decoded.error is not None:
                raise decoded.error
            sensor = registry.get(decoded.sensor_id)
            if sensor is None:
                raise _Refused("unknown_sensor", f"sensor {decoded.sensor_id!r} is not in the registry")
            if not sensor.agrees_with(decoded.kind or sensor.kind, decoded.district):
                raise _Refused("registry_mismatch", f"{decoded.district or sensor.district}/{decoded.kind or sensor.kind} "
                                                    f"here, the registry says {sensor.district}/{sensor.kind} "
                                                    f"for sensor {decoded.sensor_id!r}")
            ts = _check_ts(decoded.item, now, limits)
            values = _check_values(decoded.item, sensor.kind, limits)
        except (_Refused, FormatRefused) as exc:
            reason = f"{exc.code}: {decoded.where}: {str(exc).split(': ', 1)[1]}"
            outcomes.append(DeadLetter.of(decoded.source, topic, reason, now, decoded.sensor_id))
            continue
        outcomes.append(Reading(sensor_id=sensor.id, kind=sensor.kind, district=sensor.district, ts=ts,
                                values=values, received_at=now, mqtt_topic=topic))
    return outcomes
