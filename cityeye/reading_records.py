"""The records of ``readings.<kind>``: one reading, or an aggregate of one partition's readings.

Two shapes share the readings topics (docs/contracts.md, section "aggregated records"):

single record (every gateway before aggregation, tests, tools)
    key = the sensor id, value = one :class:`~cityeye.contracts.Reading` as JSON.
aggregated record (the gateway, the way Amazon's Kinesis Producer Library aggregates)
    header ``cityeye-agg: 1``, no key, value = a JSON array of readings, all of
    one partition: the partition their sensor keys map to with Kafka's default
    (murmur2) partitioner, :func:`partition_for`. Each sensor's readings keep
    their order inside the array and across the records of the partition.

:func:`readings_of` is the one decoder every reader of the readings topics
uses (the worker, its replay, the backtest's Kafka source, the gateway's
read-back, the tests): it yields the readings of a record of either shape,
in order, and a :class:`RejectedReading` in the place of anything that is not
a valid reading (the caller dead-letters it), never an exception. A header
version this code does not know is rejected as a whole, with the reason.

An aggregate whose every element is exactly as the gateway writes it (all
seven fields, of their JSON types, a non-empty sensor id, finite numbers) is
decoded straight into objects (msgspec, :func:`_well_formed_readings`:
~0.8 against ~1.4 µs a reading); anything else takes the plain path
(orjson and :func:`reading_from_dict`), which coerces, reads and rejects as
it always did. Both give the same readings (``tests/test_reading_records.py``).
"""

from __future__ import annotations

import functools
import json
import math
import typing
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Union

import msgspec
import orjson
from aiokafka.partitioner import murmur2

from cityeye.contracts import Reading
from cityeye.intake_progress import header_value, is_intake_progress

__all__ = [
    "AGGREGATE_HEADER",
    "AGGREGATE_VERSION",
    "AGGREGATE_HEADERS",
    "RejectedReading",
    "DecodedItem",
    "encode_reading",
    "encode_aggregate",
    "is_aggregate",
    "partition_for",
    "reading_from_dict",
    "readings_of",
    "readings_in",
]

#: the header that marks an aggregated record, and the one version this code writes and reads
AGGREGATE_HEADER = "cityeye-agg"
AGGREGATE_VERSION = b"1"
#: the headers of an aggregated record, as aiokafka's ``send(headers=...)`` takes them
AGGREGATE_HEADERS: list[tuple[str, bytes]] = [(AGGREGATE_HEADER, AGGREGATE_VERSION)]
_isfinite = math.isfinite


@dataclass(frozen=True)
class RejectedReading:
    """Something in a readings record that is not a valid reading: its bytes and why."""

    raw: bytes
    reason: str
    sensor_id: str | None = None


DecodedItem = Union[Reading, RejectedReading]


def encode_reading(reading: Reading) -> bytes:
    """A reading's JSON, the value of a single record and an element of an aggregate.

    Same bytes as ``contracts.to_json(reading)`` up to float formatting
    (orjson's shortest round-trip form), without ``dataclasses.asdict``'s deep copy.
    """
    try:
        return orjson.dumps(reading.__dict__)
    except orjson.JSONEncodeError:  # a lone surrogate in a text field: written as its JSON escape
        return json.dumps(reading.__dict__, separators=(",", ":"), ensure_ascii=False,
                          allow_nan=False).encode("utf-8", errors="backslashreplace")


def encode_aggregate(encoded: Sequence[bytes]) -> bytes:
    """The value of an aggregated record from readings encoded by :func:`encode_reading`."""
    return b"[" + b",".join(encoded) + b"]"


@functools.lru_cache(maxsize=1 << 18)  # murmur2 is pure Python in aiokafka; a city has a bounded set of sensors
def partition_for(sensor_id: str, partitions: int) -> int:
    """The partition of ``sensor_id``'s readings: Kafka's default partitioner on the sensor key.

    The same function as aiokafka's ``DefaultPartitioner`` and the Java
    client's, so aggregated and single records of one sensor share a partition.

    >>> partition_for("wl-huangpu-01", 8) == partition_for("wl-huangpu-01", 8) < 8
    True
    """
    return (murmur2(sensor_id.encode()) & 0x7FFFFFFF) % partitions


def is_aggregate(headers: Iterable[tuple[str, bytes]] | Mapping[str, bytes] | None) -> bytes | None:
    """The aggregate version of a record's headers (``b"1"``), or ``None`` for a single record."""
    value = header_value(headers, AGGREGATE_HEADER)
    return value if value is None or isinstance(value, bytes) else str(value).encode()


def reading_from_dict(d: Any, key: bytes | None = None) -> Reading:
    """A :class:`Reading` from a decoded JSON object; raises ``ValueError`` with the reason.

    Checks the fields are there and of the right type, ``ts`` and every value
    finite, and ``key`` (when the record has one) equal to the sensor id.
    Every reading the worker reads passes here, so it is written for speed
    (a loop, not a comprehension; one finiteness test of the sum before
    looking for the culprit); ``tests/test_reading_records.py`` holds it to
    the plain formulation's readings and errors.
    """
    if not isinstance(d, dict):
        raise ValueError(f"a reading is a JSON object, not {type(d).__name__}")
    try:
        sid, kind, district, values = d["sensor_id"], d["kind"], d["district"], d["values"]
        if type(sid) is not str:
            sid = str(sid)
        if type(kind) is not str:
            kind = str(kind)
        if type(district) is not str:
            district = str(district)
        ts = float(d["ts"])
        numbers = {}
        for name, v in values.items():
            numbers[name if type(name) is str else str(name)] = float(v)
        received_at = float(d["received_at"])
        topic = d.get("mqtt_topic", "")
        if type(topic) is not str:
            topic = str(topic)
    except KeyError as exc:
        raise ValueError(f"reading lacks field {exc.args[0]!r}") from None
    except (TypeError, ValueError, AttributeError) as exc:
        raise ValueError(f"malformed reading: {exc}") from None
    if not sid:
        raise ValueError("reading has an empty sensor_id")
    if not _isfinite(ts + sum(numbers.values())):  # else ts and every value are finite
        if not _isfinite(ts):
            raise ValueError("reading ts is not finite")
        bad = sorted(k for k, x in numbers.items() if not _isfinite(x))
        if bad:  # (none: finite values whose sum overflows)
            raise ValueError(f"reading values not finite: {', '.join(bad)}")
    if key is not None and key != sid.encode():
        raise ValueError(f"message key {key[:64]!r} is not the reading's sensor id {sid!r}")
    return Reading(sid, kind, district, ts, numbers, received_at, topic)


#: an aggregate's element as the gateway writes it: every field of a reading, of its exact JSON type
_WireReading = msgspec.defstruct("_WireReading", list(typing.get_type_hints(Reading).items()), gc=False)
_WELL_FORMED = msgspec.json.Decoder(list[_WireReading])


def _well_formed_readings(value: bytes) -> list[Reading] | None:
    """The readings of an aggregate's value when every element is well formed (see the module docstring),
    else ``None``: the plain path decides (an element of another shape, a coercion, a rejection)."""
    try:
        wire = _WELL_FORMED.decode(value)
    except Exception:  # not JSON, not of that shape, too deep: the plain path says what it is
        return None
    out = []
    append = out.append
    for w in wire:
        sid, ts, values = w.sensor_id, w.ts, w.values
        if not sid or not _isfinite(ts + sum(values.values())):
            return None
        append(Reading(sid, w.kind, w.district, ts, values, w.received_at, w.mqtt_topic))
    return out


def _sensor_of(obj: Any) -> str | None:
    sid = obj.get("sensor_id") if isinstance(obj, dict) else None
    return str(sid)[:64] if sid else None


def readings_of(value: bytes | None, key: bytes | None = None,
                headers: Iterable[tuple[str, bytes]] | Mapping[str, bytes] | None = None) -> list[DecodedItem]:
    """The readings of one ``readings.<kind>`` record, in order (see the module docstring).

    An intake progress record (cityeye/intake_progress.py) has none. Each item
    is a :class:`Reading` or, for anything that is not a valid reading, a :class:`RejectedReading` with the reason: a bad element of an
    aggregate rejects that element only; an unreadable record (not JSON, an
    unknown aggregate version) is one rejected item holding the whole value.
    """
    if is_intake_progress(headers):
        return []  # a gateway's intake progress (cityeye/intake_progress.py): no reading
    if value is None:
        return [RejectedReading(b"", "empty message value (tombstone) on a readings topic")]
    version = is_aggregate(headers)
    if version == AGGREGATE_VERSION:
        readings = _well_formed_readings(value)
        if readings is not None:
            return readings  # type: ignore[return-value]  (a list of readings is a list of items)
    try:
        obj = orjson.loads(value)
    except orjson.JSONDecodeError as exc:
        what = "aggregated record" if version else "reading"
        return [RejectedReading(value, f"not a JSON {what}: {exc}")]
    if version is None:
        try:
            return [reading_from_dict(obj, key)]
        except ValueError as exc:
            return [RejectedReading(value, str(exc), _sensor_of(obj))]
    if version != AGGREGATE_VERSION:
        return [RejectedReading(value, f"aggregated record version {version[:16]!r} is not supported "
                                       f"(this reader knows {AGGREGATE_VERSION!r})")]
    if not isinstance(obj, list):
        return [RejectedReading(value, f"an aggregated record is a JSON array, not {type(obj).__name__}")]
    out: list[DecodedItem] = []
    for element in obj:
        try:
            out.append(reading_from_dict(element))
        except ValueError as exc:
            out.append(RejectedReading(orjson.dumps(element), f"{exc} (in an aggregated record)", _sensor_of(element)))
    return out


def readings_in(records: Iterable[Any]) -> list[Reading]:
    """The valid readings of Kafka records (anything with ``value``, ``key``, ``headers``), in order.

    For readers that only want the readings (read-back, tests, tools); what
    is not a reading is left out.
    """
    return [item for rec in records for item in readings_of(rec.value, rec.key, rec.headers)
            if type(item) is Reading]
