"""A mapping's golden examples: payload in, the readings and dead letters the gateway makes.

Each entry of a mapping file's ``examples`` is::

    - name: a reading in centimetres
      topic: acme/gauge/wl-huangpu-01/up       # the topic it arrives on
      received: "2026-07-01T12:00:05Z"         # the gateway clock (RFC 3339)
      payload: {"t": 1782907200, "lvl_cm": 462}   # JSON (as YAML), or payload_text: a raw string
      readings:                                # expected, in order (values to 1e-6)
        - {sensor_id: wl-huangpu-01, ts: "2026-07-01T12:00:00Z", values: {level_m: 4.62}}
      dead_letters: ["mapping_failed: payload: acme-gauge: fields.level_m"]   # reason prefixes, in order

:func:`run_examples` runs every example through the gateway's own path
(:class:`ingest.formats.DeviceFormats`: the mapping, then validation
against the registry and the kinds' ranges) and returns what differs:
``cityeye devices test-mapping FILE`` and the test suite use it.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel, ConfigDict, ValidationError

from cityeye.contracts import DeadLetter, Reading, parse_ts
from cityeye.sensor_registry import SensorRegistry
from cityeye.yaml_source import first_problem
from ingest.formats import DeviceFormats
from ingest.mapping import Mapping, MappingError
from ingest.validation import Limits

__all__ = ["ExampleResult", "run_examples"]


class _ExpectedReading(BaseModel):
    model_config = ConfigDict(extra="forbid")
    sensor_id: str
    ts: str
    values: dict[str, float]


class _Example(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: str
    topic: str
    received: str
    payload: Any = None
    payload_text: str | None = None
    readings: list[_ExpectedReading] = []
    dead_letters: list[str] = []


@dataclass(frozen=True)
class ExampleResult:
    """One example's outcome: ``problems`` is empty when the mapping did what it says."""

    mapping: str
    name: str
    problems: list[str]

    @property
    def passed(self) -> bool:
        return not self.problems


def _example(mapping: Mapping, index: int, raw: dict[str, Any]) -> _Example:
    try:
        example = _Example(**raw)
        parse_ts(example.received)
        for expected in example.readings:
            parse_ts(expected.ts)
    except (ValidationError, ValueError) as exc:
        detail = first_problem(exc)[1] if isinstance(exc, ValidationError) else str(exc)
        raise MappingError(f"{mapping.source}: examples[{index}]: {detail}") from None
    if (example.payload is None) == (example.payload_text is None):
        raise MappingError(f"{mapping.source}: examples[{index}]: give exactly one of payload and payload_text")
    if mapping.match(example.topic) is None:
        raise MappingError(f"{mapping.source}: examples[{index}]: topic {example.topic!r} "
                           f"does not match the mapping's {mapping.decl.topic!r}")
    return example


def _problems(what: str, got: list, expected: list, mismatch) -> list[str]:
    """What differs between ``got`` and ``expected``: the counts, then ``mismatch(i, got, expected)`` per pair."""
    problems = [] if len(got) == len(expected) else [f"{len(got)} {what}, expected {len(expected)}"]
    return problems + [m for i, pair in enumerate(zip(got, expected)) if (m := mismatch(i, *pair))]


def _reading_mismatch(i: int, reading: Reading, want: _ExpectedReading) -> str | None:
    if (reading.sensor_id == want.sensor_id and abs(reading.ts - parse_ts(want.ts)) <= 0.0005
            and set(reading.values) == set(want.values)
            and all(math.isclose(reading.values[k], v, rel_tol=1e-6, abs_tol=1e-9) for k, v in want.values.items())):
        return None
    shown = {"sensor_id": reading.sensor_id, "ts": reading.ts, "values": reading.values}
    return f"reading {i}: got {shown}, expected {want.model_dump()} (ts {parse_ts(want.ts)})"


def _letter_mismatch(i: int, letter: DeadLetter, prefix: str) -> str | None:
    if letter.reason.startswith(prefix):
        return None
    return f"dead letter {i}: reason {letter.reason!r} does not start with {prefix!r}"


def run_examples(mapping: Mapping, registry: SensorRegistry, limits: Limits = Limits()) -> list[ExampleResult]:
    """Every example of ``mapping`` through the gateway's path; an example's mistakes raise :class:`MappingError`."""
    formats = DeviceFormats(registry, [mapping], senml=False)
    results = []
    for index, raw in enumerate(mapping.decl.examples):
        example = _example(mapping, index, raw)
        text = example.payload_text if example.payload_text is not None else json.dumps(example.payload)
        outcomes = formats.validate(text.encode(), example.topic, parse_ts(example.received), limits)
        readings = [o for o in outcomes if isinstance(o, Reading)]
        letters = [o for o in outcomes if isinstance(o, DeadLetter)]
        problems = (_problems("readings", readings, example.readings, _reading_mismatch)
                    + _problems(f"dead letters {[d.reason for d in letters]}", letters, example.dead_letters,
                                _letter_mismatch))
        results.append(ExampleResult(mapping.name, example.name, problems))
    return results
