"""The rules' fast paths change nothing but the cost (issue #10).

Messages are formatted only when read (``LazyFinding``), the rainstorm rule
keeps its finding while its totals stand still, the forecast, wind and
high-temperature and level rules return early on readings that cannot breach, and the
engine reads an open episode's finding only for an event or a snapshot
(``streams/sensor_state.py``). Each test compares with the full computation.
"""

from __future__ import annotations

import dataclasses
import json
import math
import random

import pytest

from cityeye.contracts import Reading
from cityeye.sensor_registry import Sensor, SensorRegistry
from detectors import accumulation, beaufort
from detectors.accumulation import RainfallAccumulation
from detectors.base import Finding, LazyFinding
from detectors.beaufort import WindBeaufort, beaufort_force, calm_below
from detectors.forecast import LevelForecast
from detectors.levels import WarningLevels, decode_state, encode_state
from detectors.sustained import SustainedCondition
from streams.sensor_engine import SensorEngine
from streams.sensor_state import Episode

H = 3600.0


class Renders:
    """Wraps a message function and counts its calls."""

    def __init__(self, render) -> None:
        self.render, self.calls = render, 0

    def __call__(self, *args) -> str:
        self.calls += 1
        return self.render(*args)


# -- LazyFinding ------------------------------------------------------------------


def test_a_lazy_message_is_formatted_once_and_only_when_read():
    render = Renders("level {:.2f} m".format)
    f = LazyFinding("r", "yellow", 0.5, 4.6, 4.5, render, (4.6,), field="level_m", extra={"reset": 4.4})
    assert render.calls == 0 and f.severity == "yellow" and f.rank == 2
    assert f.message == "level 4.60 m" and f.message == "level 4.60 m"
    assert render.calls == 1
    f.message = "set by hand"
    assert f.message == "set by hand" and render.calls == 1


def test_a_lazy_finding_is_a_finding_in_equality_asdict_and_snapshots():
    eager = Finding("r", "orange", 0.75, 5.3, 5.2, "level 5.30 m", field="level_m", extra={"reset": 5.15})
    lazy = LazyFinding("r", "orange", 0.75, 5.3, 5.2, "level {:.2f} m".format, (5.3,), field="level_m",
                       extra={"reset": 5.15})
    assert lazy == eager and eager == lazy and not lazy != eager
    assert lazy != dataclasses.replace(eager, value=5.4)
    assert dataclasses.asdict(lazy) == dataclasses.asdict(eager)
    state = json.loads(json.dumps(encode_state(lazy)))
    assert decode_state(state) == eager
    with pytest.raises(ValueError):
        LazyFinding("r", "purple", 1.0, None, None, str)


# -- the rainstorm rule keeps its finding ---------------------------------------------


def test_the_rainstorm_finding_is_kept_while_the_totals_stand_still(monkeypatch):
    render = Renders(accumulation._rainstorm_message)
    monkeypatch.setattr(accumulation, "_rainstorm_message", render)
    r = RainfallAccumulation()
    found = [r.update({"rain_mm": 10.0}, 600.0 * (i + 1)) for i in range(6)]  # 60 mm in 1 h: orange
    dry = [r.update({"rain_mm": 0.0}, 3600.0 + 600.0 * (i + 1)) for i in range(6)]  # within every window
    assert found[:4] == [None] * 4 and found[4].severity == found[5].severity == "orange"
    assert all(f is found[-1] for f in dry)  # no rain in, none out: the same finding
    assert render.calls == 0
    more = r.update({"rain_mm": 1.0}, 8400.0)
    assert more is not found[-1] and more.value == pytest.approx(61.0)
    assert more.message == "rain 61.0 mm in 3 h ≥ 50 mm (orange rainstorm criterion)" and render.calls == 1
    restored = RainfallAccumulation()
    restored.restore(json.loads(json.dumps(r.snapshot())))
    again = restored.update({"rain_mm": 0.0}, 9000.0)  # a restored rule builds its finding afresh
    assert again == r.update({"rain_mm": 0.0}, 9000.0) and again.extra["totals_mm"]["10800"] == pytest.approx(61.0)


def test_the_rainstorm_rule_gives_the_same_findings_as_one_restored_before_every_reading():
    rng = random.Random(4)
    fast, t, fired, quiet = RainfallAccumulation(), 1.8e9, 0, 0
    for k in range(4000):
        t += rng.choice([60.0, 60.0, 300.0, 0.5, 2 * H])
        mm = max(0.0, rng.gauss(4.0, 3.0)) if (k // 150) % 3 == 0 else 0.0
        fresh = RainfallAccumulation()  # no fast path: a restored rule counts its next reading in full
        fresh.restore(json.loads(json.dumps(fast.snapshot())))
        quiet += mm == 0.0 and t < fast._quiet_until
        got, want = fast.update({"rain_mm": mm}, t), fresh.update({"rain_mm": mm}, t)
        assert got == want and fast.snapshot() == fresh.snapshot()
        fired += got is not None
    assert fired > 500 and quiet > 500  # both paths taken, with and without a finding


# -- early exits agree with the full computation ----------------------------------------


def test_a_speed_below_calm_below_is_under_that_force_and_the_bound_is_tight():
    forces = [(v, beaufort_force(v)) for v in (i / 1000 for i in range(0, 60000))]
    for force in range(1, 18):
        calm = calm_below(force)
        assert all(f < force for v, f in forces if v < calm)
        assert beaufort_force(beaufort.BEAUFORT_LOWER_MS[force] - 0.04) == force  # 0.04 below rounds up to it
    assert calm_below(18) == math.inf and calm_below(None) == math.inf and calm_below(0) == -math.inf


def _random_weather(rng: random.Random, n: int) -> list[tuple[float, dict[str, float]]]:
    out, t = [], 0.0
    for k in range(n):
        t += rng.choice([60.0, 60.0, 600.0, 3 * H, -120.0])
        x = {"wind_ms": abs(rng.gauss(6, 6)), "gust_ms": abs(rng.gauss(12, 9)),
             "temp_c": 33 + 6 * math.sin(k / 300) + rng.gauss(0, 1.5)}
        for field in list(x):
            if rng.random() < 0.1:
                del x[field]
        out.append((t, x))
    return out


def _random_levels(rng: random.Random, n: int) -> list[tuple[float, dict[str, float]]]:
    return [(60.0 * k, {"level_m": 4.3 + math.sin(k / 200) + rng.gauss(0, 0.05)}) for k in range(n)]


@pytest.mark.parametrize("make, slow_path, readings", [
    (lambda: WindBeaufort(hold_s=1800.0), {"_calm_mean_ms": -math.inf, "_calm_gust_ms": -math.inf}, _random_weather),
    (lambda: WindBeaufort(signals=[["yellow", 7.5, None], ["red", 12, 13]]),
     {"_calm_mean_ms": -math.inf, "_calm_gust_ms": -math.inf}, _random_weather),
    (lambda: SustainedCondition(), {"_lowest_daily": -math.inf}, _random_weather),
    (lambda: SustainedCondition(daily=[["yellow", 39.0, 2]], within=[["orange", 36.0, 6 * H]]),
     {"_lowest_daily": -math.inf}, _random_weather),
    (lambda: WarningLevels(levels={"blue": 4.2, "yellow": 4.5, "red": 5.0}, hysteresis=0.1, min_duration_s=300),
     {"_lowest_level": -math.inf}, _random_levels),
    (lambda: WarningLevels(levels={"yellow": 4.0, "red": 3.5}, direction="below", hysteresis=0.2),
     {"_lowest_level": math.inf}, _random_levels),
])
def test_early_exits_give_the_same_findings_as_the_full_path(make, slow_path, readings):
    fast, slow = make(), make()
    vars(slow).update(slow_path)  # thresholds no reading is short of: every reading takes the full path
    fired = 0
    for t, x in readings(random.Random(5), 6000):
        got, want = fast.update(x, t), slow.update(x, t)
        assert got == want
        fired += got is not None
    assert 100 < fired < 5900  # both paths taken


def _expected_forecast(r: LevelForecast, v: float, t: float) -> tuple[str, float] | None:
    """What the forecast must say after a reading, from the fit's full estimate (no early exit)."""
    sign = 1.0 if r.direction == "above" else -1.0
    if sign * (v - r.level) >= 0:
        return None
    est = r._estimate(t)
    if est is None or not sign * est.slope > 0:
        return None
    b, gap = sign * est.slope, sign * (r.level - est.value)
    eta = max(0.0, gap / b)
    if eta > r.horizon_s or b < r.significance * est.slope_sd:
        return None
    return r.severity, eta


@pytest.mark.parametrize("direction, level", [("above", 4.5), ("below", 2.0)])
def test_the_forecast_fires_exactly_when_the_full_estimate_says_so(direction, level):
    rng = random.Random(9)
    r = LevelForecast("level_m", level=level, direction=direction, horizon_s=H, window_s=1800.0)
    t, fired = 0.0, 0
    for _ in range(8000):  # a tide across the level and back, with noise
        t += rng.choice([60.0, 60.0, 60.0, 30.0])
        v = level + math.sin(t / 7200.0) + rng.gauss(0.0, 0.03)
        f = r.update({"level_m": v}, t)
        want = _expected_forecast(r, v, t)
        assert (None if f is None else (f.severity, f.extra["eta_s"])) == want
        fired += f is not None
        line, est = r._fit.trend(t), r._fit.estimate(t)
        assert line == (None if est is None else (est.slope, est.value))  # the same floats
    assert 200 < fired < 2000


# -- the engine reads an open episode's finding only when it has to --------------------


def _weather_engine() -> SensorEngine:
    sensor = Sensor(id="we-fast-01", kind="weather", district="d1", lat=31.2, lon=121.5, interval_s=60)
    return SensorEngine(SensorRegistry({sensor.id: sensor}, source="<test>"))


def _rain(mm: float, t: float) -> Reading:
    return Reading("we-fast-01", "weather", "d1", t, {"rain_mm": mm, "temp_c": 25.0, "wind_ms": 2.0}, t,
                   "cityeye/d1/weather/we-fast-01")


def test_an_open_episode_formats_messages_only_for_its_events_and_snapshots(monkeypatch):
    render = Renders(accumulation._rainstorm_message)
    monkeypatch.setattr(accumulation, "_rainstorm_message", render)
    engine = _weather_engine()
    events = [e for i in range(40) for e in engine.process(_rain(2.0, 60.0 * i))]  # orange at 50 mm, then more
    assert [(e.severity, e.message) for e in events] == [
        ("orange", "rain 50.0 mm in 3 h ≥ 50 mm (orange rainstorm criterion)")]
    assert render.calls == 1  # 15 later findings, none read
    snap = engine.snapshot("we-fast-01")
    assert snap["episodes"]["weather.rainstorm"]["message"] == "rain 80.0 mm in 3 h ≥ 50 mm (orange rainstorm criterion)"
    assert snap["episodes"]["weather.rainstorm"]["value"] == pytest.approx(80.0) and render.calls == 2
    for i in range(40, 45):
        assert engine.process(_rain(0.0, 60.0 * i)) == []
    assert render.calls == 2  # the kept finding: nothing to read again
    red = [e for i in range(45, 55) for e in engine.process(_rain(2.0, 60.0 * i))]
    assert [(e.state, e.severity, e.value, e.message) for e in red] == [
        ("firing", "red", pytest.approx(100.0), "rain 100.0 mm in 3 h ≥ 100 mm (red rainstorm criterion)")]
    resolved = [e for i in range(1, 3) for e in engine.process(_rain(0.0, 3300.0 + 12 * H * i))]
    assert [(e.state, e.value, e.message) for e in resolved] == [
        ("resolved", pytest.approx(100.0), "resolved: rain 100.0 mm in 3 h ≥ 100 mm (red rainstorm criterion)")]
    assert render.calls == 3


def test_an_episode_keeps_the_last_field_any_finding_gave():
    ep = Episode("a", "r", "blue", 0.0, 1.0, 2.0, "first", field="wind_ms")
    ep.take(Finding("r", "blue", 0.25, 3.0, 2.0, "gusting", field="gust_ms"))
    ep.take(Finding("r", "blue", 0.25, 4.0, 2.0, "no field"))
    assert ep.field == "gust_ms" and ep.message == "first"  # not settled yet
    assert ep.as_dict() == {"alert_id": "a", "rule": "r", "severity": "blue", "started_at": 0.0, "value": 4.0,
                            "threshold": 2.0, "message": "no field", "field": "gust_ms"}
    assert ep.pending is None and Episode(**ep.as_dict()) == ep


# -- a rule's process is its update ------------------------------------------------------


def test_a_rules_process_is_its_update_unless_a_class_defines_its_own():
    class Plain(LevelForecast):
        def update(self, x, t):
            return "plain"

    class Own(Plain):
        def process(self, x, t):
            return "own"

    class BelowOwn(Own):
        def update(self, x, t):
            return "below"

    assert LevelForecast.process is LevelForecast.update and Plain.process is Plain.update
    assert [cls().process({}, 0.0) for cls in (Plain, Own, BelowOwn)] == ["plain", "own", "own"]
    patched = Plain()
    patched.process = lambda x, t: "patched"  # an instance's own process is still the one called
    assert patched.process({}, 0.0) == "patched"
