"""The formats devices speak: which decoder a topic gets, before validation.

:class:`DeviceFormats` holds the vendor mappings (``ingest.mappings``) and
SenML (``ingest.senml``, on by default). :meth:`DeviceFormats.decoder_for`
gives a message's decoder by topic (the mappings in the order configured,
then SenML on ``cityeye/<district>/senml/<sensor_id>``) or None for the
contract's own topics; :meth:`DeviceFormats.validate` runs it and the one
validation path (``ingest.validation.validate_decoded``). Reason codes:
:data:`FORMAT_REASONS`.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from cityeye.contracts import kind_fields
from cityeye.sensor_registry import SensorRegistry
from ingest.bounded_memo import BoundedMemo
from ingest.decoded import DecodedItem
from ingest.mapping import MAPPING_REASONS, Mapping, load_mapping
from ingest.senml import SENML_REASONS, SENML_TOPIC, decode_senml, senml_topic_parts
from ingest.units import warm_up
from ingest.validation import Limits, Outcome, validate_decoded, validate_message

__all__ = ["FORMAT_REASONS", "DeviceFormats", "Decoder", "filter_covers"]

#: dead-letter reason codes of the device formats (next to ``ingest.validation.REASONS``)
FORMAT_REASONS: dict[str, str] = {**SENML_REASONS, **MAPPING_REASONS}

#: parsed payload -> canonical items; the sensor id a whole-payload dead letter names
Decoder = tuple[Callable[[Any], list[DecodedItem]], str | None]


#: a topic's format: the mapping for it, or ``_SENML``; None: a contract topic
_SENML = "senml"


class DeviceFormats:
    """The decoders of one gateway: ``mappings`` (loaded) and SenML when ``senml``."""

    def __init__(self, registry: SensorRegistry, mappings: Sequence[Mapping] = (), *, senml: bool = True) -> None:
        self.registry = registry
        self.mappings = list(mappings)
        self.senml = senml
        self._units: dict[str, dict[str, str]] = {}
        #: topic -> (its format: a mapping, ``_SENML`` or None; the sensor a dead letter names;
        #: the sensor for rate limits and health)
        self._route = BoundedMemo(self._route_of)
        if senml or any(m.fields for m in self.mappings):
            warm_up()

    @classmethod
    def from_files(cls, registry: SensorRegistry, paths: Sequence[str], *, senml: bool = True) -> "DeviceFormats":
        """Load the mapping files (a :class:`ingest.mapping.MappingError` names the file and line)."""
        return cls(registry, [load_mapping(p) for p in paths], senml=senml)

    def mqtt_filters_beyond(self, subscribed: Sequence[str]) -> list[str]:
        """The MQTT filters these formats need that the ``subscribed`` ones do not cover (no overlapping subscriptions)."""
        filters = [m.mqtt_filter for m in self.mappings] + ([SENML_TOPIC] if self.senml else [])
        return [f for f in dict.fromkeys(filters) if not any(filter_covers(wide, f) for wide in subscribed)]

    def topic_sensor(self, topic: str) -> str | None:
        """The sensor a topic names (unchecked), for per-device rate limits and health; None if it names none.

        ``cityeye/<district>/<kind or senml>/<sensor_id>``, or a mapping's topic
        with its ``sensor_id`` level (through its ``ids``).
        """
        return self._route[topic][2]

    def _route_of(self, topic: str) -> tuple[Mapping | str | None, str | None, str | None]:
        for mapping in self.mappings:
            levels = mapping.match(topic)
            if levels is not None:
                sensor = mapping.topic_sensor(levels)
                return mapping, sensor, sensor
        parts = topic.split("/")
        named = parts[3] if len(parts) == 4 and parts[0] == "cityeye" and parts[3] else None
        if self.senml:
            senml = senml_topic_parts(topic)
            if senml is not None:
                return _SENML, senml[1], named
        return None, None, named

    def _kind_units(self, sensor_id: str) -> tuple[str, dict[str, str]] | None:
        sensor = self.registry.get(sensor_id)
        if sensor is None:
            return None
        units = self._units.get(sensor.kind)
        if units is None:  # the kinds are declared once, before the gateway starts
            units = self._units[sensor.kind] = {name: spec.unit for name, spec in kind_fields(sensor.kind).items()}
        return sensor.kind, units

    def decoder_for(self, topic: str, now: float) -> Decoder | None:
        """The decoder of a message on ``topic`` received at ``now``; None: a contract topic."""
        fmt, sensor_hint, _ = self._route[topic]
        if fmt is None:
            return None
        if fmt is _SENML:
            return (lambda doc: decode_senml(doc, topic, now, self._kind_units)), sensor_hint
        return (lambda doc: fmt.decode(doc, topic, now)), sensor_hint

    def validate(self, payload: bytes, topic: str, now: float, limits: Limits = Limits()) -> list[Outcome]:
        """Readings and dead letters of one message, in whichever format its topic says."""
        decoder = self.decoder_for(topic, now)
        if decoder is None:
            return validate_message(payload, topic, self.registry, now, limits)
        decode, sensor_hint = decoder
        return validate_decoded(payload, topic, decode, self.registry, now, limits, sensor_hint)


def filter_covers(wide: str, narrow: str) -> bool:
    """Whether every topic the MQTT filter ``narrow`` matches is matched by ``wide``.

    >>> filter_covers("cityeye/#", "cityeye/+/senml/+"), filter_covers("cityeye/+/+/+", "cityeye/+/senml/+")
    (True, True)
    >>> filter_covers("cityeye/+/+/+", "acme/gauge/+/up"), filter_covers("a/+", "a/#")
    (False, False)

    Not memoised itself (the topics it meets come from devices): the gateway asks it per
    message through an :class:`ingest.bounded_memo.BoundedMemo`.
    """
    wide_levels, narrow_levels = wide.split("/"), narrow.split("/")
    for i, level in enumerate(wide_levels):
        if level == "#":
            return True
        if i >= len(narrow_levels) or narrow_levels[i] == "#":
            return False
        if level != "+" and (narrow_levels[i] == "+" or level != narrow_levels[i]):
            return False
    return len(wide_levels) == len(narrow_levels)
