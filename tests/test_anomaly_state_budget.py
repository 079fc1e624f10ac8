"""The anomaly state's 16 KB budget held *throughout* a stream, old River snapshots, the traffic check's alert budget.

``tests/test_anomaly_state.py`` checks the state after 100 000 readings; the
state's size swings between checkpoints (a context set's fill goes from one
generation's worth of slots to two and back, the shape buffers gain a slack
of readings before they shift), so here it is sampled every 100 readings of
an adversarial stream: a periodic start, which gives the seasonal view its
period and so its seasonal context sets, then unrounded noise, which fills
every context set to its largest fill. On main ad4f64c the traffic check's
state reached 16 711 bytes within 30 000 readings.
"""

from __future__ import annotations

import base64
import json
import math
import pickle
import random
import zlib

import numpy as np
import pytest

from bench.bench_state_bytes import largest_state
from cityeye.contracts import Reading
from cityeye.sensor_registry import Sensor, SensorRegistry
from detectors.catalog import make_detector
from detectors.default_checks import default_checks
from detectors.threshold import ScoreThreshold
from streams.sensor_engine import SensorEngine

STATE_LIMIT = 16 * 1024  # bytes of JSON per sensor (issue #11)
START = 1_800_000_000.0


def periodic_then_noise(n: int, seed: int = 0):
    """A daily cycle of 96 readings for 2 400 readings, then Gaussian noise of the same level and spread."""
    rng = random.Random(seed)
    for t in range(n):
        yield 50 + 20 * math.sin(2 * math.pi * t / 96) + rng.gauss(0, 1) if t < 2400 else rng.gauss(50, 20)


def speed_check() -> ScoreThreshold:
    """The built-in ``traffic.speed_anomaly`` check of a sensor reporting every minute."""
    return next(c for c in default_checks("traffic", interval_s=60.0) if c.name == "traffic.speed_anomaly")


def test_default_model_and_traffic_check_stay_within_16_kb_throughout_an_adversarial_stream():
    check = speed_check()
    largest_check = largest_model = (0, 0)
    for k, v in enumerate(periodic_then_noise(30_000)):
        check.process({"speed_kmh": v}, START + 60.0 * k)
        if k % 100 == 99:
            state = check.snapshot()
            largest_check = max(largest_check, (len(json.dumps(state)), k + 1))
            largest_model = max(largest_model, (len(json.dumps(state["_detector"])), k + 1))
    print(f"largest state: check {largest_check}, model {largest_model} (bytes, reading)")
    assert largest_check[0] <= STATE_LIMIT and largest_model[0] <= STATE_LIMIT
    # the stream did fill the state: the seasonal view found its period, the sets their fill
    assert check.detector._seasonal._period == 96 // 12 and largest_model[0] > 12_000  # (in 12-reading blocks)


def test_the_default_models_worst_case_bound_is_within_16_kb():
    """The state at its largest information content (``bench_state_bytes.py --worst``: every context set at
    its largest fill, every float buffer incompressible, ...), after and during the seasonal warm-up: the bound
    of docs/anomaly.md section 2 (on branch statecap 17 293 bytes with the views' symbols empty)."""
    sizes = [len(json.dumps(largest_state(warmup, seed))) for warmup in (False, True) for seed in (0, 1)]
    print(f"worst-case bound: {sizes} bytes")
    assert max(sizes) <= STATE_LIMIT


def weather_sensor() -> SensorEngine:
    sensor = Sensor(id="s-1", kind="weather", district="d", lat=31.2, lon=121.5, interval_s=60, levels={})
    return SensorEngine(SensorRegistry({"s-1": sensor}))


@pytest.mark.parametrize("fractional_times", [False, True])
def test_a_weather_sensor_fed_unrounded_values_stays_within_16_kb_throughout(fractional_times):
    """Every field unrounded: rain in every reading (a full 12-hour window of 720 sums), a temperature
    falling through the day above the high-temperature levels (a full sliding-maximum queue), storms;
    times in whole seconds, or at any fraction of a second. On branch statecap (the windows as JSON
    numbers) it reached 25.9 KB."""
    rng = random.Random(3)
    engine, largest, filled = weather_sensor(), (0, 0), 0
    for k in range(3000):
        t = START + 60.0 * k + (rng.random() if fractional_times else 0.0)
        temp = 45.0 - 8.0 * (k % 1440) / 1440 + rng.random() * 1e-3
        fields = {"rain_mm": 0.01 + rng.random(), "temp_c": temp, "wind_ms": 30 * rng.random(),
                  "gust_ms": 60 * rng.random(), "humidity_pct": 100 * rng.random()}
        engine.process(Reading("s-1", "weather", "d", t, fields, t, "x"), position=k)
        if k % 100 == 99:
            snap = engine.snapshot("s-1")
            largest = max(largest, (len(json.dumps(snap)), k + 1))
            checks = engine._states["s-1"].checks
            filled = max(filled, min(len(c._rain) for c in checks if hasattr(c, "_rain")))
    print(f"weather sensor, unrounded values: largest state {largest} (bytes, reading)")
    assert largest[0] <= STATE_LIMIT and filled >= 720  # and the rain window did fill


def test_builtin_traffic_check_has_its_alert_budget():
    """docs/anomaly.md section 4: floor 0.75, one alert a sensor-week, the sensor's own interval."""
    for interval_s in (60.0, 10.0):
        check = speed_check() if interval_s == 60.0 else next(
            c for c in default_checks("traffic", interval_s=interval_s) if c.name == "traffic.speed_anomaly")
        assert isinstance(check, ScoreThreshold) and check.field == "speed_kmh"
        assert check.threshold == 0.75 and check.alerts_per_week == 1 and check.interval_s == interval_s
        assert check._quantile is not None  # the budget's histogram of the sensor's scores
        assert check.detector.snapshot().keys() == make_detector().snapshot().keys()  # the default model
        # uncalibrated (less than a week of scores), at least the former fixed threshold is in force
        assert check.uncalibrated_threshold == 0.9 and check.threshold_in_force() >= 0.9


def test_river_snapshot_pickled_without_compression_restores():
    """A River model's snapshot from before its pickle was compressed (``{"pickle": base64}``)
    restores to the same model: the same scores as the model it was taken from."""
    params = {"n_trees": 5, "height": 6, "window_size": 100, "seed": 3}
    det = make_detector("river_hst", **params)
    rng = random.Random(5)
    values = [10 * math.sin(t / 8) + rng.gauss(0, 1) for t in range(700)]
    for v in values[:400]:
        det.score_learn_one({"value": v})
    old = {"pickle": base64.b64encode(pickle.dumps((det._scaler, det._hst, det._score))).decode("ascii")}
    twin = make_detector("river_hst", **params)
    twin.restore(json.loads(json.dumps(old)))
    ours = [det.score_learn_one({"value": v}) for v in values[400:]]
    theirs = [twin.score_learn_one({"value": v}) for v in values[400:]]
    assert theirs == ours and len(set(ours)) > 10
    assert "pickle_z" in twin.snapshot()  # written again in the current, compressed form


def test_warmup_values_of_a_float64_snapshot_restore_as_float32():
    """Snapshots before session 11 kept the seasonal warm-up values as float64: they restore rounded to
    float32, as the warm-up now keeps them, and the period is found as without the snapshot."""
    det = make_detector()
    values = list(periodic_then_noise(2400, seed=4))
    for v in values[:1000]:
        det.score_learn_one({"value": v})
    state = json.loads(json.dumps(det.snapshot()))
    seasonal = next(k for k, view in enumerate(det._views) if view is det._seasonal)
    warm = np.asarray(det._seasonal._s_buf, dtype=np.float64) + 1e-9  # float64 digits beyond float32
    shuffled = warm.view(np.uint8).reshape(-1, 8).T.tobytes()  # written as the object of the former packing
    state["views"][seasonal]["s_buf"] = {"dtype": "float64", "shape": [len(warm)],
                                         "z85": base64.b85encode(zlib.compress(shuffled, 1)).decode()}
    twin = make_detector()
    twin.restore(state)
    assert list(twin._seasonal._s_buf) == warm.astype(np.float32).tolist() != warm.tolist()
    for v in values[1000:]:
        twin.score_learn_one({"value": v})
    assert twin._seasonal._period == 96 // 12
