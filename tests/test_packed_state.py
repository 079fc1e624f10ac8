"""Session 11's packed layout: the default model's scalars in one array, the rule windows packed.

``tests/fixtures/state_snapshots_session11.json`` was written by branch
statecap bbe264c (the layout before: every scalar of the default model under
its name, the rule windows as JSON numbers): three default-model snapshots
(one within the seasonal warm-up) with the scores that followed and a digest
of the scores of the whole series, and a weather sensor fed unrounded values
(its engine snapshot and the alert events that followed).

``tests/fixtures/state_scores_session11.json`` holds the scores of those
series by the commit that wrote the fixture, as float32 (made with
``OPENBLAS_CORETYPE=Haswell``, where their sha256 equals the fixture's). The
shape vote's dot products have since been summed by numpy instead of BLAS, so
that a score is the same bits on every CPU (tests/test_score_determinism.py):
the scores moved by at most ~5e-6, and are compared within 1e-5.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from bench.bench_state_bytes import _START, signal
from cityeye.contracts import Reading
from cityeye.sensor_registry import Sensor, SensorRegistry
from detectors._columns import TimedColumns
from detectors._multiscale_scalars import compact, readable, scalar_fields
from detectors._packed import pack, unpack
from detectors.catalog import make_detector
from streams.sensor_engine import SensorEngine

FIXTURE = Path(__file__).resolve().parent / "fixtures" / "state_snapshots_session11.json"
SCORES = FIXTURE.with_name("state_scores_session11.json")
SCORE_TOLERANCE = 1e-5  # BLAS's sums (then) against numpy's (now), and float32
WEATHER_FIELDS = ("rain_mm", "temp_c", "wind_ms", "gust_ms")  # the fields the fixture's sensor was fed


def fixture() -> dict:
    return json.loads(FIXTURE.read_text())


def test_scores_and_state_are_those_of_the_named_layout():
    """The scores of branch statecap on three series, and its snapshots restore to the same state."""
    then = json.loads(SCORES.read_text())["scores"]
    for case in fixture()["model"]:
        values = list(signal(case["signal"], case["n"], seed=case["seed"]))
        fresh = make_detector()
        scores = [fresh.score_learn_one({"value": v}) for v in values]
        assert np.abs(np.asarray(scores) - unpack(then[case["signal"]])).max() <= SCORE_TOLERANCE, case["signal"]
        old = case["snapshot"]
        assert "scalars" not in old and "mean" in old["views"][0]  # the named layout
        twin = make_detector()
        twin.restore(old)
        cut = case["cut"]
        after = [twin.score_learn_one({"value": v}) for v in values[cut:]]
        assert after[:200] == pytest.approx(case["after_cut"], rel=0, abs=SCORE_TOLERANCE)
        assert after == pytest.approx(scores[cut:], rel=0, abs=SCORE_TOLERANCE)
        # the same state at the end: every part alike, the scalars within float noise
        state, twin_state = fresh.snapshot(), twin.snapshot()
        assert {k: v for k, v in twin_state.items() if k != "scalars"} == {
            k: v for k, v in state.items() if k != "scalars"}
        assert np.allclose(unpack(twin_state["scalars"]), unpack(state["scalars"]), rtol=1e-6, atol=1e-9, equal_nan=True)


def test_readable_names_every_scalar():
    det = make_detector()
    for v in signal("period_noise", 3000, seed=1):
        det.score_learn_one({"value": v})
    state = json.loads(json.dumps(det.snapshot()))
    assert len(unpack(state["scalars"])) == len(scalar_fields(len(det._views))) == 71
    named = readable(state)
    seasonal = det._views.index(det._seasonal)
    assert named["views"][seasonal]["period"] == det._seasonal._period == 8
    assert [v["mean"] for v in named["views"]] == [v._mean for v in det._views]
    assert named["views"][0]["hist"] == det._views[0]._contexts.history() and len(named["views"][0]["hist"][0]) == 8
    assert named["shape"]["rng"] == det._shape._rng and named["shape_long"]["blocks"] == det._long.blocks_learnt
    assert named["flat"]["fired"] is False and named["alarms"] == det._alarms
    assert compact(named) == state  # the named form packs back to the same snapshot
    # the named form is the layout of before: ~0.9 KB more
    assert len(json.dumps(named)) - len(json.dumps(state)) > 700


def weather_engine() -> SensorEngine:
    sensor = Sensor(id="s-1", kind="weather", district="d", lat=31.2, lon=121.5, interval_s=60, levels={})
    return SensorEngine(SensorRegistry({"s-1": sensor}))


def weather_reading(k: int, v: float) -> Reading:
    t = _START + 60.0 * k
    return Reading("s-1", "weather", "d", t, dict.fromkeys(WEATHER_FIELDS, v), t, "x")


def events(engine: SensorEngine, k: int, v: float) -> list:
    return [[e.rule, e.severity, e.state, e.started_at, e.updated_at, e.value, e.threshold, e.message]
            for e in engine.process(weather_reading(k, v), position=k)]


def test_rule_windows_of_the_json_layout_restore_to_the_same_alerts_and_state():
    case = fixture()["weather"]
    old = case["snapshot"]
    assert len(old["checks"]["weather.rainstorm"]["_rain"]["v"]) == 720  # a full window, as JSON numbers
    values = [abs(v) for v in signal(case["signal"], case["n"], seed=case["seed"])]
    fresh, twin = weather_engine(), weather_engine()
    for k, v in enumerate(values[:case["cut"]]):
        fresh.process(weather_reading(k, v), position=k)
    assert twin.restore(old)
    for k in range(case["cut"], case["n"]):
        assert events(twin, k, values[k]) == events(fresh, k, values[k]) == case["events_after_cut"][k - case["cut"]]
    assert twin.snapshot("s-1") == fresh.snapshot("s-1")
    rain = fresh.snapshot("s-1")["checks"]["weather.rainstorm"]["_rain"]
    assert isinstance(rain["t"], str) and isinstance(rain["v"], str)  # packed


def test_timed_columns_round_trip_any_time_and_value():
    rng = np.random.default_rng(2)
    for times in (1.8e9 + 60.0 * np.arange(500),  # a steady interval
                  1.8e9 + np.cumsum(rng.random(500) * 120),  # fractional seconds
                  np.array([-5.5, -0.0, 0.0, 1e-300, 2.0**31 - 1, 2.0**31 + 0.25, 1e300])):  # signs, exponents
        c = TimedColumns()
        for t in times:
            c.append(float(t), float(rng.standard_normal() * 10.0 ** int(rng.integers(-300, 300))))
        c.head = 3
        back = TimedColumns.restored(json.loads(json.dumps(c.snapshot())))
        assert back.t.tobytes() == c.t[3:].tobytes() and back.v.tobytes() == c.v[3:].tobytes()
    regular = TimedColumns()
    for k in range(720):
        regular.append(1.8e9 + 60.0 * k, 0.1 * (k % 15))
    assert len(regular.snapshot()["t"]) < 100  # a steady interval costs next to nothing (JSON offsets: ~3.5 KB)
    assert TimedColumns.restored({}).snapshot() == TimedColumns().snapshot()


def test_a_truncated_symbols_array_is_a_clear_error_not_a_bare_stop_iteration():
    det = make_detector()
    for t in range(500):
        det.score_learn_one({"value": float(t % 13)})
    state = det.snapshot()
    cut = dict(state, hist=pack(unpack(state["hist"])[:3]))
    with pytest.raises(ValueError, match="truncated hist"):
        readable(cut)
