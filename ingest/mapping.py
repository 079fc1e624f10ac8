"""Vendor payload mappings: a YAML file per device family turns its JSON into readings.

::

    mapping: acme-gauge                  # named in every dead letter it makes
    topic: acme/{district}/gauges/{device}/up   # {name}: one topic level, named
    kind: water_level                    # the kind of the sensors it maps
    sensor_id: {topic: device}           # or {path: <JMESPath>[, scope: message]}; ids: {vendor id: sensor id}
    readings: obs[]                      # optional JMESPath: one reading per element
    ts: {path: t, format: epoch_s}       # epoch_s | epoch_ms | iso8601 | received
    fields:
      level_m: {path: lvl, unit: cm}     # pint unit, converted to the field's contract unit; scale, offset
      humidity_pct: {path: rh, required: false}   # left out when the payload has none
    examples: [...]                      # golden payload -> readings (ingest/mapping_examples.py)

Paths are JMESPath expressions evaluated on the reading's element (the
whole payload without ``readings``; ``scope: message`` for a sensor id or
time that sits outside the elements). A value is ``raw * scale + offset``
then converted from ``unit`` to the contract unit of the field
(:mod:`ingest.units`); numeric strings are read as numbers. A field that
is not one of the kind's contract fields takes no ``unit``.

:func:`parse_mapping` validates a file (errors name the file, line and
field); :meth:`Mapping.decode` is pure and refuses what it cannot map with
``mapping_failed: <mapping>: <path>: <what>``, per element when the
elements are readings.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import jmespath
from jmespath.exceptions import JMESPathError
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from cityeye.contracts import kind_fields
from cityeye.errors import ConfigError
from cityeye.kinds import kind_names
from cityeye.yaml_source import first_problem, line_of, load_yaml, read_config_text
from ingest.decoded import DecodedItem, FormatRefused, source_bytes
from ingest.units import Affine, UnitError, converter

__all__ = ["MAPPING_REASONS", "SHIPPED_MAPPINGS", "Mapping", "MappingError", "load_mapping", "parse_mapping"]

#: the example mappings shipped with CityEye (``ingest/mappings/``; ``cityeye run`` loads them)
SHIPPED_MAPPINGS: list[Path] = sorted((Path(__file__).resolve().parent / "mappings").glob("*.yaml"))

#: dead-letter reason codes of vendor mappings
MAPPING_REASONS: dict[str, str] = {
    "mapping_failed": "a vendor mapping could not map the payload: the mapping's name and the path that failed",
}

_SEGMENT_NAME = re.compile(r"^\{([A-Za-z_][A-Za-z0-9_]*)\}$")
_FIELD_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,63}$")
_SENSOR_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")


class MappingError(ConfigError):
    """A mapping file that cannot be used (the message names file, line and field)."""


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class _SensorSource(_Strict):
    topic: str | None = None
    path: str | None = None
    scope: Literal["reading", "message"] = "reading"
    #: the vendor's device id (a DevEUI, a serial number) -> the registry's sensor id
    ids: dict[str, str] | None = None

    @model_validator(mode="after")
    def _one(self) -> "_SensorSource":
        if (self.topic is None) == (self.path is None):
            raise ValueError("give exactly one of topic (a {name} of the topic) and path (a JMESPath)")
        return self


class _TsSource(_Strict):
    path: str | None = None
    format: Literal["epoch_s", "epoch_ms", "iso8601", "received"]
    scope: Literal["reading", "message"] = "reading"

    @model_validator(mode="after")
    def _path(self) -> "_TsSource":
        if (self.path is None) != (self.format == "received"):
            raise ValueError("format received takes no path; every other format needs one")
        return self


class _FieldMap(_Strict):
    path: str
    unit: str | None = None
    scale: float = 1.0
    offset: float = 0.0
    required: bool = True


class _MappingDecl(_Strict):
    mapping: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")
    description: str = ""
    topic: str
    kind: str
    sensor_id: _SensorSource
    readings: str | None = None
    ts: _TsSource
    fields: dict[str, _FieldMap] = Field(min_length=1)
    examples: list[dict[str, Any]] = []


@dataclass(frozen=True)
class _CompiledField:
    name: str
    path: str
    expr: Any
    convert: Affine
    required: bool


def _compile(path: str, where: tuple[Any, ...], fail) -> Any:
    try:
        return jmespath.compile(path)
    except JMESPathError as exc:
        raise fail(where, f"not a JMESPath expression: {str(exc).splitlines()[0]}") from None


def _topic_pattern(topic: str, fail) -> tuple[re.Pattern, str, set[str]]:
    """The regular expression, MQTT filter and segment names of a ``topic`` pattern."""
    regex, filt, names = [], [], set()
    levels = topic.split("/")
    for i, level in enumerate(levels):
        named = _SEGMENT_NAME.fullmatch(level)
        if named:
            regex.append(f"(?P<{named.group(1)}>[^/]+)")
            filt.append("+")
            names.add(named.group(1))
        elif level == "+":
            regex.append("[^/]+")
            filt.append("+")
        elif level == "#" and i == len(levels) - 1:
            regex.append(".*")
            filt.append("#")
        elif not level or any(c in level for c in "+#{}"):
            raise fail(("topic",), f"level {level!r}: a topic level is a word, + , {{name}} or a final #")
        else:
            regex.append(re.escape(level))
            filt.append(level)
    return re.compile("^" + "/".join(regex) + "$"), "/".join(filt), names


class Mapping:
    """One vendor mapping, validated and compiled; see the module doc."""

    def __init__(self, decl: _MappingDecl, source: str, root: Any) -> None:
        def fail(path: tuple[Any, ...], msg: str) -> MappingError:
            return MappingError(f"{source}:{line_of(root, path) or 1}: {'.'.join(map(str, path))}: {msg}")

        self.name, self.kind, self.source, self.decl = decl.mapping, decl.kind, source, decl
        self.description = decl.description
        if decl.kind not in kind_names():
            raise fail(("kind",), f"unknown kind {decl.kind!r}; expected one of {', '.join(kind_names())}")
        self._regex, self.mqtt_filter, segments = _topic_pattern(decl.topic, fail)
        if decl.sensor_id.topic is not None and decl.sensor_id.topic not in segments:
            raise fail(("sensor_id", "topic"), f"{{{decl.sensor_id.topic}}} is not a level of the topic {decl.topic!r}")
        for vendor_id, sensor_id in (decl.sensor_id.ids or {}).items():
            if not _SENSOR_ID.fullmatch(sensor_id):
                raise fail(("sensor_id", "ids", vendor_id), f"{sensor_id!r} is not a sensor id (1-64 letters, digits, "
                                                            "'_', '.', '-')")
        self._sensor_expr = _compile(decl.sensor_id.path, ("sensor_id", "path"), fail) if decl.sensor_id.path else None
        self._readings_expr = _compile(decl.readings, ("readings",), fail) if decl.readings else None
        self._ts_expr = _compile(decl.ts.path, ("ts", "path"), fail) if decl.ts.path else None
        contract = kind_fields(decl.kind)
        self.fields: list[_CompiledField] = []
        for name, spec in decl.fields.items():
            where = ("fields", name)
            if not _FIELD_NAME.fullmatch(name):
                raise fail(where, "a field name is an identifier of up to 64 characters")
            convert = Affine()
            if spec.unit is not None:
                if name not in contract:
                    raise fail((*where, "unit"), f"{name} is no contract field of {decl.kind} "
                                                 f"({', '.join(contract)}): scale it, it has no unit to convert to")
                try:
                    convert = converter(spec.unit, contract[name].unit)
                except UnitError as exc:
                    raise fail((*where, "unit"), str(exc)) from None
            total = Affine(spec.scale * convert.scale, spec.offset * convert.scale + convert.offset)
            self.fields.append(_CompiledField(name, spec.path, _compile(spec.path, (*where, "path"), fail),
                                              total, spec.required))

    def topic_sensor(self, levels: dict[str, str]) -> str | None:
        """The sensor id a topic's levels name (for a dead letter of the whole message), if the topic names one."""
        source = self.decl.sensor_id
        if source.topic is None:
            return None
        found = levels.get(source.topic)
        return source.ids.get(found) if source.ids is not None else found

    def match(self, topic: str) -> dict[str, str] | None:
        """The named levels of ``topic`` if this mapping is for it, else None."""
        found = self._regex.match(topic)
        return found.groupdict() if found else None

    def _failed(self, path: str, detail: str) -> FormatRefused:
        return FormatRefused("mapping_failed", f"{self.name}: {path}: {detail}")

    def _sensor(self, element: Any, doc: Any, levels: dict[str, str]) -> str:
        source = self.decl.sensor_id
        if source.topic is not None:
            found: Any = levels[source.topic]
        else:
            found = self._search(self._sensor_expr, f"sensor_id {source.path}",
                                 doc if source.scope == "message" else element)
        if source.ids is not None:
            if not isinstance(found, (str, int)) or str(found) not in source.ids:
                raise self._failed(f"sensor_id {source.path or '{' + source.topic + '}'}",
                                   f"device {_shown(found)} has no entry in ids")
            return source.ids[str(found)]
        if source.topic is not None:
            return found
        if isinstance(found, bool) or not isinstance(found, (str, int)) or not _SENSOR_ID.fullmatch(str(found)):
            raise self._failed(f"sensor_id {source.path}", f"found {_shown(found)}, not a sensor id "
                                                           "(1-64 letters, digits, '_', '.', '-')")
        return str(found)

    def _search(self, expr: Any, path: str, data: Any) -> Any:
        try:
            return expr.search(data)
        except JMESPathError as exc:  # a function given the wrong type by this payload
            raise self._failed(path, str(exc).splitlines()[0][:200]) from None

    def _ts(self, element: Any, doc: Any, now: float) -> float | str:
        ts = self.decl.ts
        if ts.format == "received":
            return now * 1000.0
        found = self._search(self._ts_expr, f"ts {ts.path}", doc if ts.scope == "message" else element)
        if ts.format == "iso8601":
            if not isinstance(found, str):
                raise self._failed(f"ts {ts.path}", f"found {_shown(found)}, not an ISO 8601 string")
            return found
        number = _number(found)
        if number is None:
            raise self._failed(f"ts {ts.path}", f"found {_shown(found)}, not {ts.format.replace('_', ' ')}")
        return number * 1000.0 if ts.format == "epoch_s" else number

    def _values(self, element: Any) -> dict[str, float]:
        values: dict[str, float] = {}
        for field in self.fields:
            found = self._search(field.expr, f"fields.{field.name} {field.path}", element)
            if found is None and not field.required:
                continue
            number = _number(found)
            if number is None:
                raise self._failed(f"fields.{field.name} {field.path}", f"found {_shown(found)}, not a number")
            values[field.name] = field.convert(number)
        return values

    def decode(self, doc: Any, topic: str, now: float) -> list[DecodedItem]:
        """Canonical reading items of one payload (parsed JSON) received on ``topic`` at ``now``.

        Raises :class:`FormatRefused` (``mapping_failed``) when the payload
        as a whole cannot be mapped (the readings path finds no list).
        """
        levels = self.match(topic) or {}
        district = levels.get("district")
        if self._readings_expr is None:
            elements, label = [doc], "payload"
        else:
            elements = self._search(self._readings_expr, f"readings {self.decl.readings}", doc)
            if not isinstance(elements, list) or not elements:
                raise self._failed(f"readings {self.decl.readings}", f"found {_shown(elements)}, not a list of readings")
            label = "readings[{}]"
        out = []
        for index, element in enumerate(elements):
            where, sensor = label.format(index), None
            try:
                sensor = self._sensor(element, doc, levels)
                item = {"ts": self._ts(element, doc, now), "values": self._values(element)}
                out.append(DecodedItem(sensor, item, where, source_bytes(element), None, district, self.kind))
            except FormatRefused as exc:
                out.append(DecodedItem(sensor, None, where, source_bytes(element), exc, district, self.kind))
        return out


def _number(found: Any) -> float | None:
    """A finite number from a JSON number or a numeric string, else None."""
    if isinstance(found, bool):
        return None
    if isinstance(found, str):
        try:
            found = float(found.strip())
        except ValueError:
            return None
    if isinstance(found, (int, float)):
        try:
            number = float(found)
        except OverflowError:
            return None
        return number if math.isfinite(number) else None
    return None


def _shown(found: Any) -> str:
    return "nothing" if found is None else f"{type(found).__name__} {str(found)[:40]!r}"


def parse_mapping(text: str, source: str = "<string>") -> Mapping:
    """The mapping in ``text``; raises :class:`MappingError` naming ``source``, the line and the field."""
    data, root = load_yaml(text, source, MappingError)
    if not isinstance(data, dict):
        raise MappingError(f"{source}:1: a mapping file is a YAML mapping (mapping, topic, kind, sensor_id, ts, fields)")
    try:
        decl = _MappingDecl(**data)
    except ValidationError as exc:
        loc, msg = first_problem(exc)
        raise MappingError(f"{source}:{line_of(root, loc) or 1}: {'.'.join(map(str, loc)) or 'file'}: {msg}") from None
    return Mapping(decl, source, root)


def load_mapping(path: str | Path) -> Mapping:
    """Load a mapping file; raises :class:`MappingError` naming file and line."""
    return parse_mapping(read_config_text(path, MappingError, "device mapping"), source=str(path))
