"""One generic interface test, run over every check class of the detectors package.

Classes are collected by walking ``detectors.*`` for concrete
:class:`~detectors.base.Check` subclasses defined there. Rules run as they
are; anomaly detectors (which yield scores, not findings) run wrapped in
:class:`~detectors.threshold.ScoreThreshold`. ``PARAMS`` holds constructor
arguments where the defaults would not exercise the class.

For each: ``clone`` gives a fresh instance with equal configuration; a
snapshot taken mid-stream, sent through JSON and restored into a clone gives
identical subsequent outputs; missing fields, NaN and inf never raise (and
leave a field-bound check's state alone); ``score_one`` stays in ``[0, 1]``;
findings are well formed. Every anomaly detector's ``score_learn_one`` gives
the very floats (and state) of ``score_one`` then ``learn_one``.
"""

from __future__ import annotations

import copy
import dataclasses
import importlib
import inspect
import json
import math
import pkgutil

import numpy as np
import pytest

import detectors
from cityeye.contracts import SEVERITY_RANK
from detectors.base import AnomalyDetector, Check, Finding
from detectors.threshold import ScoreThreshold

#: constructor arguments by class name (default: no arguments)
PARAMS: dict[str, dict] = {
    "Flatline": {"field": "level_m", "repeats": 4},
    "StaleSensor": {"expected_interval_s": 60.0, "missed_intervals": 5},
    "WindBeaufort": {"hold_s": 1200.0},
    "LevelForecast": {"field": "level_m", "level": 4.5, "horizon_s": 6 * 3600.0, "window_s": 7200.0},
}


def _collect() -> list[type]:
    found: dict[str, type] = {}
    for info in pkgutil.iter_modules(detectors.__path__):
        mod = importlib.import_module(f"detectors.{info.name}")
        for _, cls in inspect.getmembers(mod, inspect.isclass):
            if (
                issubclass(cls, Check)
                and cls.__module__ == mod.__name__
                and not inspect.isabstract(cls)
                and cls is not ScoreThreshold
            ):
                found[f"{cls.__module__}.{cls.__qualname__}"] = cls
    return [found[k] for k in sorted(found)]


CLASSES = _collect()


def _make(cls: type) -> Check:
    params = dict(PARAMS.get(cls.__name__, {}))
    if issubclass(cls, AnomalyDetector):
        if "field" in inspect.signature(cls).parameters:
            params.setdefault("field", "speed_kmh")
        return ScoreThreshold(cls(**params), threshold=0.5, field="speed_kmh", min_count=20, name="speed.anomaly")
    return cls(**params)


def _stream(n: int = 400, seed: int = 7) -> list[tuple[str, float, dict]]:
    """Events ``("r", t, values)`` (a reading) or ``("t", t, {})`` (a tick), with gaps, NaNs, missing fields."""
    rng = np.random.default_rng(seed)
    events: list[tuple[str, float, dict]] = []
    t = 1_750_000_000.0
    for i in range(n):
        t += 600.0 if i != n // 3 else 7200.0  # one long gap
        day = i / 144.0
        x = {
            "level_m": round(3.8 + 1.7 * math.sin(math.pi * i / n) + rng.normal(0, 0.03), 2),
            "rain_mm": float(max(0.0, rng.normal(6.0, 3.0))) if 100 < i < 160 else 0.0,
            "temp_c": 30.0 + 4.0 * day + 6.0 * math.sin(2 * math.pi * (i % 144) / 144.0),
            "wind_ms": 5.0 + 20.0 * math.exp(-(((i - 250) / 20.0) ** 2)) + rng.normal(0, 1),
            "gust_ms": 8.0 + 30.0 * math.exp(-(((i - 250) / 20.0) ** 2)) + abs(rng.normal(0, 2)),
            "speed_kmh": 60.0 + rng.normal(0, 4.0) if not 300 < i < 310 else 8.0,
            "flow_vph": 1200.0 + rng.normal(0, 50.0),
        }
        if 200 <= i < 210:
            x["level_m"] = 4.44  # a flat stretch
        if i == 120:
            x["level_m"] = 9.0  # a spike
        for k in list(x):
            u = rng.random()
            if u < 0.08:
                del x[k]
            elif u < 0.12:
                x[k] = float("nan")
            elif u < 0.13:
                x[k] = float("inf")
        events.append(("r", t, x))
        if i % 5 == 0:
            events.append(("t", t + 500.0, {}))
    return events


STREAM = _stream()


def _run(check: Check, events) -> list:
    out = []
    for kind, t, x in events:
        f = check.process(x, t) if kind == "r" else check.tick(t)
        out.append(None if f is None else dataclasses.asdict(f))
    return out


def _config(obj) -> dict:
    def val(v):
        if hasattr(v, "__dict__") and not isinstance(v, type):
            return (type(v).__name__, _config(v))
        return v

    return {k: val(v) for k, v in vars(obj).items() if not k.startswith("_")}


def _json(state):
    return json.loads(json.dumps(state, allow_nan=False))


@pytest.fixture(params=CLASSES, ids=lambda c: c.__name__)
def cls(request):
    return request.param


def test_collected_every_check():
    names = {c.__name__ for c in CLASSES}
    assert {"WarningLevels", "RateOfChange", "RainfallAccumulation", "SustainedCondition", "WindBeaufort",
            "Flatline", "StaleSensor", "LevelForecast"} <= names


def test_clone_is_fresh_with_equal_config(cls):
    check = _make(cls)
    fresh_state = _json(check.snapshot())
    _run(check, STREAM[:200])
    twin = check.clone()
    assert twin is not check and type(twin) is type(check)
    assert _config(twin) == _config(check)
    assert _json(twin.snapshot()) == fresh_state
    assert twin.name == check.name


def test_snapshot_json_restore_gives_identical_outputs(cls):
    check = _make(cls)
    half = len(STREAM) // 2
    _run(check, STREAM[:half])
    state = _json(check.snapshot())
    twin = check.clone()
    twin.restore(state)
    assert _run(twin, STREAM[half:]) == _run(check, STREAM[half:])


def test_outputs_fire_and_are_well_formed(cls):
    check = _make(cls)
    outs = [f for f in _run(check, STREAM) if f is not None]
    # every check has something to find in the stream (anomaly detectors: the speed drop at readings 300-310)
    assert outs, f"{cls.__name__} found nothing in the test stream"
    for f in outs:
        assert f["rule"] == check.name
        assert f["severity"] in SEVERITY_RANK
        assert 0.0 <= f["score"] <= 1.0
        assert isinstance(f["message"], str) and f["message"]
        json.dumps(f, allow_nan=False)


@pytest.mark.parametrize(
    "bad",
    [{}, {"level_m": float("nan")}, {"other": 1.0}, {"speed_kmh": float("nan"), "rain_mm": float("inf")},
     {"temp_c": float("-inf"), "wind_ms": float("nan"), "gust_ms": float("nan")}],
    ids=["empty", "nan", "other-field", "nan-inf", "all-bad"],
)
def test_missing_and_nan_never_raise(cls, bad):
    check = _make(cls)
    _run(check, STREAM[:150])
    t = STREAM[149][1] + 1.0
    before_state = _json(check.snapshot())
    before = getattr(check, "_current", None)
    got = check.process(copy.deepcopy(bad), t)
    assert got is None or isinstance(got, Finding)
    if getattr(check, "field", None) is not None:  # field-bound: state and finding kept
        assert _json(check.snapshot()) == before_state
        assert got == before
    check.tick(t + 1.0)


def test_score_one_in_unit_interval(cls):
    check = _make(cls)
    for kind, t, x in STREAM:
        if kind == "r":
            s = check.score_one(x, t)
            assert 0.0 <= s <= 1.0
            check.process(x, t)


ANOMALY_CLASSES = [c for c in CLASSES if issubclass(c, AnomalyDetector)]


def _model_stream(n: int = 3000, seed: int = 11) -> list[dict]:
    """A periodic speed series (found periodic by the seasonal views) with spikes, a stuck
    stretch, a level shift, NaN, inf, ints, huge values and missing fields."""
    rng = np.random.default_rng(seed)
    out: list[dict] = []
    for i in range(n):
        v = 60.0 + 15.0 * math.sin(2 * math.pi * i / 48) + float(rng.normal(0, 2.0))
        if i % 397 == 0:
            v += 80.0
        if 1200 <= i < 1300:
            v = 41.5  # stuck
        if i >= 2600:
            v -= 30.0
        x: dict = {"speed_kmh": v}
        u = rng.random()
        if u < 0.02:
            x = {}
        elif u < 0.04:
            x["speed_kmh"] = float("nan")
        elif u < 0.05:
            x["speed_kmh"] = float("inf")
        elif u < 0.06:
            x["speed_kmh"] = int(v)
        elif u < 0.065:
            x["speed_kmh"] = 1e300  # beyond float32: models read it held at their limit
        out.append(x)
    return out


@pytest.mark.parametrize("model", ANOMALY_CLASSES, ids=lambda c: c.__name__)
def test_score_learn_one_equals_score_then_learn(model):
    params = dict(PARAMS.get(model.__name__, {}))
    if "field" in inspect.signature(model).parameters:
        params.setdefault("field", "speed_kmh")
    split, joint = model(**params), model(**params)
    split_scores, joint_scores = [], []
    for i, x in enumerate(_model_stream()):
        split_scores.append(split.score_one(dict(x)))
        split.learn_one(dict(x))
        if i % 7 == 0:
            joint.score_one(dict(x))  # a look without learning changes nothing
        joint_scores.append(joint.score_learn_one(dict(x)))
    assert np.array_equal(np.asarray(split_scores), np.asarray(joint_scores), equal_nan=True)
    assert max(joint_scores) > 0.5  # the stream has something to score
    assert _json(joint.snapshot()) == _json(split.snapshot())
