"""Rule unit tests, like ``promtool test rules``: input series in, expected alerts at given times.

A test file (YAML)::

    rules: my-rules.yaml            # optional, relative to this file; default: the built-in rules
    kinds: my-kinds.yaml            # optional, relative to this file: kinds beyond the bundled ones
    sensors:                        # registry entries, as in the sensor registry
      - {id: wl-t, kind: water_level, district: test, lat: 31.2, lon: 121.5, interval_s: 60,
         levels: {warning_m: 4.5, guaranteed_m: 5.2}}
    tests:
      - name: a steady rise crosses the warning level and stays
        sensor: wl-t
        start: "2026-07-01T00:00:00Z"      # optional (this is the default)
        interval: 1m                       # optional: the sensor's interval_s
        series:                            # one series per field (evaluation/series_notation.py)
          level_m: "4.0x9 4.0+0.05x20 5.0x30"
        expect:                            # the alerts firing at each time, exactly
          - {at: 5m, firing: []}
          - {at: 40m, firing: [{rule: water_level.warning, severity: yellow}]}

Each step ``start + i * interval`` with a value in some field is a reading
(only the fields with a value at that step); a step with none is a clock
tick (no-data rules fire on ticks). At each ``at`` the checks are ticked at
that time and the alerts in force (rule and severity) must equal the list.
The real per-sensor engine (``streams/sensor_engine.py``) runs the real
checks built from the rules, so a passing test pins what the worker does.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from cityeye.contracts import Reading, parse_ts
from cityeye.errors import ConfigError
from cityeye.kinds import kinds_declared
from cityeye.sensor_registry import Sensor, SensorRegistry
from cityeye.yaml_source import line_of, load_yaml, read_config_text
from detectors.rule_library import RuleError, parse_duration
from detectors.rulebook import Rulebook, load_rulebook
from evaluation.series_notation import SeriesError, expand_series
from streams.sensor_engine import SensorEngine

__all__ = ["RuleTestError", "TestResult", "run_rule_test_file"]


class RuleTestError(ConfigError):
    """A rule test file that cannot be run (names file, line and field)."""


class _Alert(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    rule: str
    severity: str


class _Expect(BaseModel):
    model_config = ConfigDict(extra="forbid")
    at: str | float
    firing: list[_Alert] = Field(default_factory=list)


class _Test(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: str
    sensor: str
    start: str = "2026-07-01T00:00:00Z"
    interval: str | float | None = None
    series: dict[str, str | float]
    expect: list[_Expect]


class _File(BaseModel):
    model_config = ConfigDict(extra="forbid")
    rules: str | None = None
    kinds: str | None = None
    sensors: list[dict[str, Any]]
    tests: list[_Test]


@dataclass
class TestResult:
    """One test's outcome; ``failures`` lists each expectation that did not hold."""

    name: str
    failures: list[str] = field(default_factory=list)
    #: alert events the test produced, as ``(seconds from start, rule, state, severity)``
    events: list[tuple[float, str, str, str]] = field(default_factory=list)

    @property
    def passed(self) -> bool:
        return not self.failures


def _fmt(alerts: set[tuple[str, str]]) -> str:
    return "[" + ", ".join(f"{r} {s}" for r, s in sorted(alerts)) + "]"


def _run(test: _Test, registry: SensorRegistry, rulebook: Rulebook, where: str) -> TestResult:
    sensor = registry.get(test.sensor)
    if sensor is None:
        raise RuleTestError(f"{where}.sensor: {test.sensor!r} is not in the test file's sensors")
    try:
        start = parse_ts(test.start)
        interval = parse_duration(test.interval if test.interval is not None else sensor.interval_s, sensor.interval_s)
        series = {f: expand_series(s) for f, s in test.series.items()}
        expects = sorted(((parse_duration(e.at, interval), e) for e in test.expect), key=lambda p: p[0])
    except (ValueError, RuleError, SeriesError) as exc:
        raise RuleTestError(f"{where}: {exc}") from None
    if interval <= 0:
        raise RuleTestError(f"{where}.interval: must be positive")
    engine = SensorEngine(registry, checks_factory=rulebook.checks_for)
    result, firing = TestResult(test.name), {}

    def apply(events: list) -> None:
        for ev in events:
            result.events.append((round(ev.updated_at - start, 3), ev.rule, ev.state, ev.severity))
            if ev.state == "firing":
                firing[ev.rule] = ev.severity
            else:
                firing.pop(ev.rule, None)

    steps = max(len(s) for s in series.values())
    step = 0
    for offset, expect in [*expects, (None, None)]:
        while step < steps and (offset is None or step * interval <= offset):
            t = start + step * interval
            values = {f: s[step] for f, s in series.items() if step < len(s) and s[step] is not None}
            if values:
                apply(engine.process(Reading(sensor.id, sensor.kind, sensor.district, t, values, t, "")))
            else:
                apply(engine.tick(t, [sensor.id]))
            step += 1
        if expect is None:
            break
        apply(engine.tick(start + offset, [sensor.id]))
        want = {(a.rule, a.severity) for a in expect.firing}
        got = set(firing.items())
        if got != want:
            result.failures.append(f"at {expect.at}: expected {_fmt(want)}, got {_fmt(got)}")
    return result


def run_rule_test_file(path: str | Path) -> list[TestResult]:
    """Run every test of a rule test file; raises :class:`RuleTestError` for a file that cannot run."""
    p = Path(path)
    data, root = load_yaml(read_config_text(p, RuleTestError, "the rule test file"), str(p), RuleTestError)
    try:
        spec = _File.model_validate(data)
    except ValidationError as exc:
        err = exc.errors()[0]
        loc = tuple(err["loc"])
        msg = "unknown key" if err["type"] == "extra_forbidden" else err["msg"]
        raise RuleTestError(f"{p}:{line_of(root, loc)}: {'.'.join(map(str, loc))}: {msg}") from None
    with kinds_declared(p.parent / spec.kinds if spec.kinds else None):
        return _run_file(spec, p, root)


def _run_file(spec: _File, p: Path, root: Any) -> list[TestResult]:
    sensors = {}
    for i, entry in enumerate(spec.sensors):
        try:
            sensor = Sensor(**entry)
        except (ValidationError, TypeError) as exc:
            raise RuleTestError(f"{p}:{line_of(root, ('sensors', i))}: sensors[{i}]: {exc}") from None
        sensors[sensor.id] = sensor
    registry = SensorRegistry(sensors, source=str(p))
    rulebook = load_rulebook(p.parent / spec.rules if spec.rules else None)
    rulebook.check_registry(registry)
    return [_run(t, registry, rulebook, f"{p}:{line_of(root, ('tests', i))}: tests[{i}]")
            for i, t in enumerate(spec.tests)]
