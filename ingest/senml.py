"""SenML (RFC 8428) JSON packs -> canonical reading items, a pure function.

Topic: ``cityeye/<district>/senml/<sensor_id>`` (:data:`SENML_TOPIC`). A
pack is a JSON array of records; :func:`decode_senml` resolves it as RFC
8428 section 4.6 says (base name, time, unit, value and version carried
forward; ``bn + n`` is the name, ``bt + t`` the time, ``bv + v`` the value;
a time below 2**28 is relative to the gateway's clock) and maps each
record to the topic's sensor and one of its kind's fields:

* the full name is ``[urn:dev:<type>:]<sensor_id>(:|/)<field>``, or just
  ``<field>`` (the sensor is then the topic's). A device publishes only its
  own readings: a name for another sensor is refused.
* ``<field>`` is a contract field (``level_m``) or its name without the
  unit (``level``, ``temp``, ``speed``); the record's unit (``u`` or
  ``bu``: ``cm``, ``Cel``, ``km/h``, ``%RH``, see
  :data:`ingest.units.SENML_UNITS`) is converted to the field's contract
  unit; no unit means the contract unit. Other names pass on unchanged
  (without a unit) as fields the kind does not declare.
* records of one time make one reading with several values.

The pack is refused as a whole (``senml_invalid``) for what RFC 8428 calls
an invalid pack: not an array of objects, a key ending in ``_`` this
gateway does not understand, ``bver`` above 10, a record without a value
or with several, a name outside the RFC's characters, a mistyped field.
A record that is valid SenML but cannot become a reading (another
sensor's name, a unit that does not convert, a string or boolean value)
dead-letters its reading with the reasons in :data:`SENML_REASONS`.
"""

from __future__ import annotations

import math
import re
from typing import Any

from ingest.decoded import DecodedItem, FormatRefused, source_bytes
from ingest.units import SENML_UNITS, UnitError, converter

__all__ = ["SENML_REASONS", "SENML_TOPIC", "SENML_VERSION", "decode_senml", "senml_topic_parts"]

#: the MQTT topic SenML packs are published on (an MQTT filter)
SENML_TOPIC = "cityeye/+/senml/+"
#: the highest SenML version this gateway understands (RFC 8428: 10)
SENML_VERSION = 10
#: relative times are below this (RFC 8428 section 4.5.3)
_RELATIVE_LIMIT = 2 ** 28

#: dead-letter reason codes of SenML packs
SENML_REASONS: dict[str, str] = {
    "senml_invalid": "the pack breaks RFC 8428: not an array of records, an unknown key ending in '_', "
                     "bver above 10, a record with no value or several, a bad name or a mistyped field",
    "senml_name": "a record's full name does not name the topic's sensor and a field",
    "senml_unit": "a record's unit is not a SenML unit or does not convert to its field's contract unit",
}

_LABELS = {"bn": str, "bt": (int, float), "bu": str, "bv": (int, float), "bs": (int, float), "bver": int,
           "n": str, "u": str, "v": (int, float), "vs": str, "vb": bool, "vd": str, "s": (int, float),
           "t": (int, float), "ut": (int, float)}
_VALUES = ("v", "vs", "vb", "vd")
_KINDS_OF_VALUE = {"vs": "a string", "vb": "a boolean", "vd": "a data", "s": "a sum (s) but no"}
_NAME = re.compile(r"^[A-Za-z0-9][-:./A-Za-z0-9_]*$")
_URN_DEV = re.compile(r"^urn:dev:[a-z]+:", re.IGNORECASE)
_FIELD = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,63}$")


def senml_topic_parts(topic: str) -> tuple[str, str] | None:
    """``(district, sensor_id)`` of a SenML topic, None for any other topic."""
    parts = topic.split("/")
    if len(parts) == 4 and parts[0] == "cityeye" and parts[2] == "senml" and parts[1] and parts[3]:
        return parts[1], parts[3]
    return None


def _invalid(index: int, detail: str) -> FormatRefused:
    return FormatRefused("senml_invalid", f"record {index}: {detail}")


def _check_types(index: int, record: dict) -> None:
    for key, value in record.items():
        wanted = _LABELS.get(key)
        if wanted is None:
            if key.endswith("_"):
                raise _invalid(index, f"unknown must-understand key {key[:40]!r}")
            continue
        if isinstance(value, bool) and wanted is not bool or not isinstance(value, wanted):
            raise _invalid(index, f"{key} has the wrong type ({type(value).__name__})")
        if wanted == (int, float) and not _finite(value):
            raise _invalid(index, f"{key} is not finite")


def _finite(value: int | float) -> bool:
    try:
        return math.isfinite(float(value))
    except OverflowError:  # an integer beyond a double
        return False


def _resolve(pack: Any) -> list[tuple[int, dict[str, Any]]]:
    """RFC 8428 section 4.6: every record with its base values applied, or :class:`FormatRefused`."""
    if not isinstance(pack, list) or not pack:
        raise FormatRefused("senml_invalid", "a SenML pack is a non-empty JSON array of records")
    base: dict[str, Any] = {"bn": "", "bt": 0.0, "bu": None, "bv": 0.0, "bver": SENML_VERSION}
    resolved = []
    for index, record in enumerate(pack):
        if not isinstance(record, dict):
            raise _invalid(index, "not a JSON object")
        _check_types(index, record)
        record = {k: float(v) if _LABELS.get(k) == (int, float) else v for k, v in record.items()}
        base.update({k: record[k] for k in ("bn", "bt", "bu", "bv", "bver") if k in record})
        if base["bver"] > SENML_VERSION:  # (an int, checked above: no overflow here)
            raise _invalid(index, f"bver {base['bver']} is newer than the supported version {SENML_VERSION}")
        name = base["bn"] + record.get("n", "")
        if not _NAME.fullmatch(name):
            raise _invalid(index, f"name {name[:70]!r} is empty or has characters RFC 8428 does not allow")
        given = [k for k in _VALUES if k in record]
        if len(given) > 1:
            raise _invalid(index, f"more than one value ({', '.join(given)})")
        if not given and "s" not in record:
            raise _invalid(index, "no value (v, vs, vb, vd or s)")
        out = {"n": name, "t": base["bt"] + record.get("t", 0.0), "u": record.get("u", base["bu"])}
        if given:
            key = given[0]
            out[key] = base["bv"] + record["v"] if key == "v" else record[key]
        else:
            out["s"] = record.get("s")
        resolved.append((index, out))
    return resolved


def _split_name(name: str, topic_sensor: str) -> tuple[str, str]:
    """``(sensor_id, field)`` of a full name (see the module doc)."""
    rest = _URN_DEV.sub("", name)
    cut = max(rest.rfind(":"), rest.rfind("/"))
    return (rest[:cut], rest[cut + 1:]) if cut >= 0 else (topic_sensor, rest)


def _contract_field(name: str, fields: dict[str, str]) -> str | None:
    if name in fields:
        return name
    matches = [f for f in fields if f.startswith(name + "_")]
    return matches[0] if len(matches) == 1 else None


def _value(record: dict[str, Any], fields: dict[str, str]) -> tuple[str, float]:
    """``(contract field, value in its unit)`` of one resolved record, or :class:`FormatRefused`."""
    if "v" not in record:
        what = next((_KINDS_OF_VALUE[k] for k in _KINDS_OF_VALUE if k in record), "no")
        raise FormatRefused("not_a_number", f"{record['n']} has {what} value; readings carry numbers (v)")
    short = record["field"]
    target, unit = _contract_field(short, fields), record["u"]
    if target is None:
        if not _FIELD.fullmatch(short):
            raise FormatRefused("senml_name", f"field {short[:70]!r} is not an identifier")
        if unit is not None:
            raise FormatRefused("senml_unit", f"{short} has unit {unit!r} but is no field of the "
                                              f"sensor's kind ({', '.join(fields)}): send it without a unit")
        return short, float(record["v"])
    if unit is None:
        return target, float(record["v"])
    if unit not in SENML_UNITS:
        raise FormatRefused("senml_unit", f"{unit[:20]!r} is not a SenML unit this gateway converts")
    try:
        return target, converter(SENML_UNITS[unit], fields[target])(float(record["v"]))
    except UnitError as exc:
        raise FormatRefused("senml_unit", f"{short} in {unit!r} -> {target}: {exc}") from None


def decode_senml(pack: Any, topic: str, now: float, kind_units) -> list[DecodedItem]:
    """The readings of one SenML pack published on ``topic`` (a :data:`SENML_TOPIC`).

    ``kind_units(sensor_id)`` gives the sensor's kind and its contract
    fields with their units (``("water_level", {"level_m": "m"})``), or
    None for a sensor the registry does not know (validation refuses it).
    Readings are grouped by time in the pack's order; their ``ts`` is epoch
    milliseconds. Raises :class:`FormatRefused` for an invalid pack.
    """
    district, topic_sensor = senml_topic_parts(topic) or (None, "")
    known = kind_units(topic_sensor)
    kind, fields = known if known else (None, {})
    out: list[DecodedItem | _Group] = []
    open_groups: dict[float, _Group] = {}
    for index, record in _resolve(pack):
        ts = record["t"] + now if record["t"] < _RELATIVE_LIMIT else record["t"]
        sensor, record["field"] = _split_name(record["n"], topic_sensor)
        try:
            if sensor != topic_sensor:
                raise FormatRefused("senml_name", f"name {record['n'][:70]!r} is for sensor "
                                                  f"{sensor[:64]!r}, not the topic's {topic_sensor!r}")
            field, value = _value(record, fields)
        except FormatRefused as exc:
            out.append(DecodedItem(topic_sensor, None, f"record {index}", source_bytes(pack[index]), exc,
                                   district, kind))
            continue
        group = open_groups.get(ts)
        if group is None or field in group.values:  # a field given twice for one time: a second reading
            group = open_groups[ts] = _Group(ts)
            out.append(group)
        group.add(index, pack[index], field, value)
    return [entry if isinstance(entry, DecodedItem) else entry.decoded(topic_sensor, district, kind) for entry in out]


class _Group:
    """The records of one time: one reading."""

    def __init__(self, ts: float) -> None:
        self.ts = ts
        self.values: dict[str, float] = {}
        self.records: list[int] = []
        self.parts: list[Any] = []

    def add(self, index: int, part: Any, field: str, value: float) -> None:
        self.values[field] = value
        self.records.append(index)
        self.parts.append(part)

    def decoded(self, sensor_id: str, district: str | None, kind: str | None) -> DecodedItem:
        where = f"record{'s' if len(self.records) > 1 else ''} {','.join(map(str, self.records))}"
        return DecodedItem(sensor_id, {"ts": self.ts * 1000.0, "values": self.values}, where,
                           source_bytes(self.parts), None, district, kind)
