"""Behaviour of the rule detectors on hand-made sequences."""

from __future__ import annotations

import json
import math
import random

import numpy as np
import pytest

from detectors.accumulation import RainfallAccumulation
from detectors.beaufort import WindBeaufort, beaufort_force
from detectors.flatline import Flatline
from detectors.forecast import LevelForecast
from detectors.levels import WarningLevels
from detectors.rate import RateOfChange
from detectors.default_checks import default_checks
from detectors.stale import StaleSensor
from detectors.sustained import SustainedCondition
from detectors.threshold import ScoreThreshold

H = 3600.0
DAY = 86400.0


def sev(f):
    return None if f is None else f.severity


def feed(rule, field, values, dt=60.0, t0=0.0):
    return [sev(rule.update({field: v}, t0 + i * dt)) for i, v in enumerate(values)]


# -- WarningLevels --------------------------------------------------------------


def test_levels_oscillating_around_level_does_not_flap():
    r = WarningLevels("level_m", levels={"yellow": 4.5, "orange": 5.2}, hysteresis=0.1)
    wave = [4.5 + 0.05 * math.sin(i) for i in range(200)]
    out = feed(r, "level_m", [4.3] + wave)
    first = out.index("yellow")
    assert all(s == "yellow" for s in out[first:])  # fired once, held throughout
    # without hysteresis the same series flaps
    r0 = WarningLevels("level_m", levels={"yellow": 4.5}, hysteresis=0.0)
    out0 = feed(r0, "level_m", [4.3] + wave)
    flips = sum(1 for a, b in zip(out0, out0[1:]) if a != b)
    assert flips > 20


def test_levels_deescalate_only_below_reset():
    r = WarningLevels("level_m", levels={"yellow": 4.5, "orange": 5.2}, reset={"yellow": 4.4, "orange": 5.0})
    assert feed(r, "level_m", [5.3, 5.1, 5.01, 4.99, 4.45, 4.41, 4.39]) == [
        "orange", "orange", "orange", "yellow", "yellow", "yellow", None,
    ]


def test_levels_min_duration_before_firing_and_raising():
    r = WarningLevels("level_m", levels={"yellow": 4.5, "orange": 5.2}, hysteresis=0.1, min_duration_s=300)
    # above yellow at t=0..240 (4 min): not yet; dips below level -> timer restarts
    out = feed(r, "level_m", [4.6] * 5 + [4.45] + [4.6] * 7)
    assert out[:6] == [None] * 6
    assert out[6:11] == [None] * 5 and out[11] == "yellow"  # 300 s after the run restarted at index 6
    # raising to orange waits too, the yellow stays meanwhile
    out = feed(r, "level_m", [5.3] * 6, t0=13 * 60.0)
    assert out == ["yellow"] * 5 + ["orange"]
    f = r.update({"level_m": 5.3}, 19 * 60.0)
    assert f.threshold == 5.2 and "for 6 min" in f.message


def test_levels_message_units_and_below_direction():
    r = WarningLevels("speed_kmh", levels={"yellow": 20.0, "orange": 10.0}, direction="below", hysteresis=2.0,
                      name="traffic.slow")
    f = r.update({"speed_kmh": 8.0}, 0)
    assert (f.severity, f.rule, f.field, f.value, f.threshold) == ("orange", "traffic.slow", "speed_kmh", 8.0, 10.0)
    assert f.message == "speed 8.00 km/h below orange level 10.00 km/h"
    assert sev(r.update({"speed_kmh": 11.0}, 60)) == "orange"  # within reset 12
    assert sev(r.update({"speed_kmh": 13.0}, 120)) == "yellow"
    assert r.update({"speed_kmh": 30.0}, 180) is None


def test_levels_reject_inconsistent_config():
    with pytest.raises(ValueError):
        WarningLevels("level_m", levels={"yellow": 5.0, "orange": 4.0})
    with pytest.raises(ValueError):
        WarningLevels("level_m", levels={"purple": 5.0})


# -- RateOfChange ---------------------------------------------------------------


def test_rate_of_rise_fires_and_clears():
    r = RateOfChange("level_m", rate_per_hour=0.3, window_s=H)
    out = feed(r, "level_m", [3.0 + 0.4 * i / 60 for i in range(61)])  # 0.4 m/h, one reading a minute
    assert out[20] is None  # less than half a window: no slope yet
    assert out[-1] == "yellow"
    f = r.update({"level_m": 3.4}, 61 * 60.0)
    assert f.value == pytest.approx(0.4, rel=0.05) and "m/h" in f.message
    assert feed(r, "level_m", [3.4] * 60, t0=62 * 60.0)[-1] is None


def test_rate_levels_and_falling():
    r = RateOfChange("level_m", levels={"blue": 0.2, "orange": 0.5}, window_s=H, direction="falling")
    assert feed(r, "level_m", [5.0 - 0.6 * i / 60 for i in range(61)])[-1] == "orange"
    r = RateOfChange("level_m", levels={"blue": 0.2, "orange": 0.5}, window_s=H, direction="falling")
    assert feed(r, "level_m", [5.0 - 0.3 * i / 60 for i in range(61)])[-1] == "blue"
    assert feed(r, "level_m", [5.0 + 0.3 * i / 60 for i in range(61)], t0=2 * H)[-1] is None


# -- RainfallAccumulation ---------------------------------------------------------


@pytest.mark.parametrize(
    "mm_per_h, hours, expected",
    [(4.5, 12, "blue"), (9.0, 6, "yellow"), (20.0, 3, "orange"), (35.0, 3, "red"), (3.0, 12, None)],
)
def test_cma_rainstorm_signals(mm_per_h, hours, expected):
    r = RainfallAccumulation()
    out = feed(r, "rain_mm", [mm_per_h / 6] * (hours * 6), dt=600.0, t0=600.0)
    assert out[-1] == expected


def test_rainstorm_resolves_and_ignores_late_readings():
    r = RainfallAccumulation()
    feed(r, "rain_mm", [10.0] * 18, dt=600.0, t0=600.0)  # 180 mm in 3 h
    f = r.update({"rain_mm": 0.0}, 19 * 600.0)
    assert f.severity == "red" and f.value == pytest.approx(180.0 - 10.0)
    assert sev(r.update({"rain_mm": 50.0}, 100.0)) == "red"  # late: ignored
    assert r.totals()[3 * H] == pytest.approx(170.0)
    # 12 h after the rain stopped no window meets its criterion
    assert r.update({"rain_mm": 0.0}, 18 * 600.0 + 12 * H + 1) is None
    assert r.totals()[12 * H] == 0.0


def test_rainstorm_buffer_is_bounded():
    r = RainfallAccumulation()
    feed(r, "rain_mm", [0.1] * 5000, dt=60.0)
    assert len(r._rain) <= 12 * 60
    assert len(r._rain.t) <= 1.25 * 12 * 60 + 16  # expired readings are cut off
    assert r.totals()[12 * H] == pytest.approx(0.1 * 720, rel=1e-6)
    feed(r, "rain_mm", [0.0] * 5000, dt=60.0, t0=5000 * 60.0)
    assert len(r._rain) == 0 and r.totals()[12 * H] == 0.0  # dry readings are not kept


# -- SustainedCondition ------------------------------------------------------------


def cst(day, hour):
    """Epoch seconds of ``hour`` o'clock China Standard Time on day ``day``."""
    return day * DAY + (hour - 8) * H


def test_three_consecutive_hot_days():
    r = SustainedCondition()
    assert r.update({"temp_c": 35.5}, cst(0, 14)) is None
    assert r.update({"temp_c": 36.0}, cst(1, 14)) is None
    assert r.update({"temp_c": 30.0}, cst(2, 9)) is None  # morning of day 3: not yet
    f = r.update({"temp_c": 35.0}, cst(2, 13))
    assert f.severity == "yellow" and "3 consecutive days" in f.message
    # next morning the run is still in force until day 4 ends below 35
    assert sev(r.update({"temp_c": 28.0}, cst(3, 7))) == "yellow"
    assert r.update({"temp_c": 30.0}, cst(4, 7)) is None


def test_hot_days_use_local_days_and_gaps_break_the_run():
    r = SustainedCondition()
    # 01:00 CST on day 1 is still day 0 in UTC: three CST days, each hot in its late evening / night
    for d in range(3):
        f = r.update({"temp_c": 35.2}, cst(d, 23.5))
    assert sev(f) == "yellow"
    r = SustainedCondition()
    r.update({"temp_c": 36.0}, cst(0, 14))
    r.update({"temp_c": 36.0}, cst(1, 14))
    assert r.update({"temp_c": 36.0}, cst(3, 14)) is None  # no reading on day 2
    r = SustainedCondition(utc_offset_h=0)
    for d in range(3):
        f = r.update({"temp_c": 35.2}, cst(d, 23.5))  # 15:30 UTC each day
    assert sev(f) == "yellow"


def test_high_temperature_within_24h():
    r = SustainedCondition()
    assert sev(r.update({"temp_c": 37.2}, cst(0, 14))) == "orange"
    assert sev(r.update({"temp_c": 40.1}, cst(0, 15))) == "red"
    assert sev(r.update({"temp_c": 30.0}, cst(1, 14.5))) == "red"  # within 24 h of the 40.1
    assert sev(r.update({"temp_c": 30.0}, cst(1, 15.5))) is None
    f = SustainedCondition().update({"temp_c": 40.0}, 0.0)
    assert f.threshold == 40.0 and "40.0°C" in f.message


# -- Beaufort -----------------------------------------------------------------------


@pytest.mark.parametrize(
    "ms, force",
    [(0.1, 0), (0.3, 1), (1.5, 1), (1.6, 2), (5.4, 3), (5.5, 4), (7.9, 4), (8.0, 5), (13.8, 6), (13.9, 7),
     (17.1, 7), (17.2, 8), (24.4, 9), (24.5, 10), (28.4, 10), (32.6, 11), (32.7, 12), (36.9, 12), (41.4, 13),
     (41.5, 14), (46.2, 15), (51.0, 16), (56.1, 17), (80.0, 17)],
)
def test_beaufort_table(ms, force):
    assert beaufort_force(ms) == force


@pytest.mark.parametrize(
    "x, expected",
    [
        ({"wind_ms": 10.8}, "blue"),  # mean force 6
        ({"gust_ms": 17.2}, "blue"),  # gust force 8
        ({"wind_ms": 17.2, "gust_ms": 20.0}, "yellow"),
        ({"wind_ms": 12.0, "gust_ms": 24.5}, "yellow"),  # gust force 10
        ({"wind_ms": 24.5}, "orange"),
        ({"gust_ms": 32.7}, "orange"),
        ({"wind_ms": 32.7}, "red"),
        ({"wind_ms": 20.0, "gust_ms": 41.5}, "red"),
        ({"wind_ms": 10.7, "gust_ms": 17.1}, None),
    ],
)
def test_typhoon_like_signals(x, expected):
    assert sev(WindBeaufort().update(x, 0.0)) == expected


def test_wind_hold():
    r = WindBeaufort(hold_s=600)
    assert sev(r.update({"wind_ms": 25.0}, 0)) == "orange"
    assert sev(r.update({"wind_ms": 11.0}, 300)) == "orange"
    assert sev(r.update({"wind_ms": 11.0}, 700)) == "blue"
    assert r.update({"wind_ms": 3.0}, 1400) is None


# -- Flatline, stale -----------------------------------------------------------------


def test_flatline():
    r = Flatline("level_m", repeats=5)
    assert feed(r, "level_m", [4.1, 4.2, 4.2, 4.2, 4.2, 4.2, 4.2, 4.3]) == [None] * 5 + ["blue", "blue", None]
    r = Flatline("level_m", repeats=3, tolerance=0.01)
    assert feed(r, "level_m", [4.2, 4.205, 4.21, 4.215]) == [None, None, "blue", None]
    r = Flatline("level_m", repeats=3)
    assert feed(r, "level_m", [4.2, 4.2, float("nan"), 4.2]) == [None, None, None, "blue"]


def test_stale_via_tick():
    r = StaleSensor(expected_interval_s=60, missed_intervals=5, severity="orange")
    assert r.tick(10_000.0) is None  # never seen
    r.process({"level_m": 1.0}, 0.0)
    assert r.tick(299.0) is None
    f = r.tick(300.0)
    assert f.severity == "orange" and f.value == 300.0 and f.threshold == 300.0
    assert r.tick(600.0).value == 600.0
    assert r.process({}, 610.0) is None  # any reading counts as seen
    assert r.tick(700.0) is None
    # field-bound: readings without the field do not count
    r = StaleSensor(expected_interval_s=60, missed_intervals=2, field="level_m")
    r.process({"level_m": 1.0}, 0.0)
    r.process({"level_m": float("nan")}, 100.0)
    assert sev(r.tick(130.0)) == "yellow"
    # state survives JSON
    twin = r.clone()
    twin.restore(json.loads(json.dumps(r.snapshot())))
    assert twin.tick(130.0) == r.tick(130.0)


# -- LevelForecast ----------------------------------------------------------------------


def test_forecast_eta_on_linear_rise_fires_before_crossing():
    rng = np.random.default_rng(3)
    rate = 0.5 / H  # 0.5 m/h, from 3.5 m: reaches 4.5 m at t = 2 h
    r = LevelForecast("level_m", level=4.5, horizon_s=H, window_s=1800)
    first = None
    for i in range(121):
        t = 60.0 * i
        f = r.update({"level_m": 3.5 + rate * t + rng.normal(0, 0.01)}, t)
        if f is not None:
            true_eta = 2 * H - t
            assert f.extra["eta_s"] == pytest.approx(true_eta, abs=max(600.0, 3 * f.extra["eta_sd_s"]))
            assert f.extra["eta_sd_s"] > 0
            assert "predicted to reach the warning level 4.50 m in" in f.message and "±" in f.message
            first = t if first is None else first
    assert first is not None and 2 * H - first >= 0.8 * H  # warned close to the full hour ahead
    assert r.update({"level_m": 4.55}, 2 * H + 60) is None  # crossed: the level rule takes over


def test_forecast_quiet_when_flat_or_far():
    rng = np.random.default_rng(4)
    r = LevelForecast("level_m", level=4.5, horizon_s=H, window_s=1800)
    out = [r.update({"level_m": 4.4 + rng.normal(0, 0.02)}, 60.0 * i) for i in range(120)]
    assert all(f is None for f in out)  # noisy but flat, close to the level
    r = LevelForecast("level_m", level=4.5, horizon_s=H, window_s=1800)
    out = [r.update({"level_m": 2.0 + 0.2 * 60.0 * i / H}, 60.0 * i) for i in range(60)]
    assert all(f is None for f in out)  # rising, but 2.5 m at 0.2 m/h is 12 h away


def test_forecast_robust_to_a_spike():
    r = LevelForecast("level_m", level=4.5, horizon_s=H, window_s=1800)
    f = None
    for i in range(31):
        v = 4.0 + 0.5 * 60.0 * i / H
        f = r.update({"level_m": 9.0 if i == 25 else v}, 60.0 * i)
    # 4.25 m now, rising 0.5 m/h: 30 min to go
    assert f.extra["eta_s"] == pytest.approx(1800.0, abs=120.0)


# -- ScoreThreshold -----------------------------------------------------------------------


def test_score_threshold_warmup_and_state():
    from detectors.catalog import make_detector

    st = ScoreThreshold(make_detector(field="speed_kmh"), threshold=0.9, field="speed_kmh", min_count=30,
                        name="traffic.speed_anomaly")
    out = [st.process({"speed_kmh": 60.0 + (i % 3)}, 60.0 * i) for i in range(200)]
    assert all(f is None for f in out[:30])  # warm-up
    state = json.loads(json.dumps(st.snapshot()))
    assert "_detector" in state
    twin = st.clone()
    assert twin.detector is not st.detector
    twin.restore(state)
    for i, v in enumerate([60.0, 5.0, 5.0, 61.0, 120.0]):
        a, b = st.process({"speed_kmh": v}, 1e5 + i), twin.process({"speed_kmh": v}, 1e5 + i)
        assert (a is None) == (b is None) and (a is None or a.score == b.score)


# -- default_checks ---------------------------------------------------------------------


def test_default_checks_names_and_flood_mapping():
    levels = {"warning_m": 4.5, "guaranteed_m": 5.2, "historical_max_m": 5.86}
    wl = default_checks("water_level", levels)
    assert [c.name for c in wl] == [
        "water_level.warning", "water_level.rate_of_rise", "water_level.forecast", "water_level.flatline",
        "water_level.stale",
    ]
    assert wl[0].levels == {"blue": pytest.approx(4.2), "yellow": 4.5, "orange": 5.2, "red": 5.86}
    assert wl[2].level == 4.5
    assert [c.name for c in default_checks("weather", {})] == [
        "weather.rainstorm", "weather.high_temperature", "weather.wind", "weather.stale",
    ]
    tr = default_checks("traffic", {}, interval_s=30)
    assert [c.name for c in tr] == ["traffic.speed_anomaly", "traffic.stale"]
    assert tr[1].expected_interval_s == 30
    # no levels: no level rule nor forecast; a bad ladder drops the bad level
    assert [c.name for c in default_checks("water_level", {})] == [
        "water_level.rate_of_rise", "water_level.flatline", "water_level.stale",
    ]
    assert default_checks("water_level", {"warning_m": 4.5, "guaranteed_m": 4.0})[0].levels == {
        "blue": pytest.approx(4.2), "yellow": 4.5,
    }
    with pytest.raises(ValueError):
        default_checks("noise", {})


@pytest.mark.parametrize("kind", ["water_level", "weather", "traffic"])
def test_default_checks_tolerate_foreign_readings(kind):
    """Empty, unrelated and NaN readings raise nothing, find nothing and leave a field-bound check as it was."""
    for c in default_checks(kind, {"warning_m": 4.5, "guaranteed_m": 5.2}):
        fresh = json.dumps(c.snapshot(), allow_nan=False, sort_keys=True)
        for t, x in enumerate([{}, {"unrelated": 1.0}, {"level_m": float("nan"), "speed_kmh": float("nan")}]):
            assert c.process(x, float(t)) is None, c.name
            assert c.tick(float(t)) is None, c.name
            state = json.dumps(c.snapshot(), allow_nan=False, sort_keys=True)
            if getattr(c, "field", None) is not None:
                assert state == fresh, f"{c.name} changed its state on a reading without its field"


def test_default_water_level_warning_end_to_end():
    wl = {c.name: c for c in default_checks("water_level", {"warning_m": 4.5, "guaranteed_m": 5.2})}
    rule = wl["water_level.warning"]
    out = [sev(rule.process({"level_m": v}, 60.0 * i)) for i, v in enumerate([4.0, 4.25, 4.3, 4.3, 4.6, 4.6, 4.6])]
    assert out == [None, None, None, "blue", "blue", "blue", "yellow"]  # 2 min before firing / raising


def test_traffic_speed_anomaly_runs_the_catalog_default_detector():
    from detectors.catalog import DEFAULT_DETECTOR, DETECTORS

    st = default_checks("traffic", {})[0]
    assert type(st.detector) is DETECTORS[DEFAULT_DETECTOR] and st.detector.field == "speed_kmh"
    rng = random.Random(1)
    for i in range(300):  # free-flowing traffic (the default detector needs some spread to learn from)
        st.process({"speed_kmh": 60.0 + rng.gauss(0.0, 2.0)}, 60.0 * i)
    f = st.process({"speed_kmh": 2.0}, 60.0 * 300)
    assert f is not None and f.rule == "traffic.speed_anomaly"
    twin = st.clone()
    twin.restore(json.loads(json.dumps(st.snapshot())))
    assert twin.score_one({"speed_kmh": 2.0}) == st.score_one({"speed_kmh": 2.0})
