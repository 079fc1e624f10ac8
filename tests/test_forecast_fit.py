"""The running line fit of the forecast and the rate of rise: exact, O(1) state, restorable to the bit."""

from __future__ import annotations

import json
import random

import numpy as np
import pytest

from detectors._line_fit import WindowedLineFit
from detectors.forecast import LevelForecast
from detectors.rate import RateOfChange


def gappy_series(n: int, seed: int) -> list[tuple[float, float]]:
    """Readings about a minute apart at epoch-sized times, with gaps of up to 2 h, rising and noisy."""
    rng = random.Random(seed)
    t, out = 1.8e9 + rng.uniform(0, 1000), []
    for i in range(n):
        t += rng.choice([60.0, 60.0, 60.0, 17.5, 300.0]) if rng.random() > 0.01 else rng.uniform(600, 7200)
        out.append((t, 3.0 + 0.0001 * i + rng.gauss(0, 0.05)))
    return out


def test_the_running_fit_equals_a_fresh_least_squares_fit_at_every_reading():
    fit, series = WindowedLineFit(window_s=1800.0), gappy_series(5000, 3)
    for k, (t, y) in enumerate(series):
        fit.add(t, y)
        if k % 37:
            continue
        pts = np.asarray([(a, b) for a, b in series[max(0, k - 200): k + 1] if a >= t - 1800.0])
        assert len(fit) == len(pts) and fit.span_s == pts[-1, 0] - pts[0, 0]
        if len(pts) < 3:
            continue
        slope, intercept = np.polyfit(pts[:, 0] - t, pts[:, 1], 1)
        est = fit.estimate(t)
        assert est.slope == pytest.approx(slope, rel=1e-6, abs=1e-12)
        assert est.value == pytest.approx(intercept, abs=1e-9)
        resid = pts[:, 1] - (intercept + slope * (pts[:, 0] - t))
        assert est.sigma == pytest.approx(float(np.sqrt((resid**2).sum() / (len(pts) - 2))), rel=1e-6)


def test_the_fit_holds_only_its_window_in_flat_arrays():
    fit = WindowedLineFit(window_s=3600.0)
    for i in range(100_000):
        fit.add(60.0 * i, float(i % 7))
    assert len(fit) == 61
    assert len(fit._pts.t) <= 1.25 * 61 + 16  # expired points are cut off, not kept
    assert fit._pts.t.typecode == fit._pts.v.typecode == "d"


@pytest.mark.parametrize("make", [lambda: LevelForecast(level=4.5, window_s=1800.0),
                                  lambda: RateOfChange(rate_per_hour=0.3, window_s=3600.0)])
def test_a_restored_check_computes_the_same_floats(make):
    # a saw tooth: 0.5 m/h for 4 h from 3.0 m (the warning level 4.5 m at 3 h), then back, with noise
    series = [(t, 3.0 + 0.5 * ((t - 1.8e9) / 3600.0 % 4.0) + 0.01 * np.sin(t)) for t, _ in gappy_series(3000, 5)]
    live, cut = make(), 1777
    for t, v in series[:cut]:
        live.update({"level_m": v}, t)
    twin = make()
    twin.restore(json.loads(json.dumps(live.snapshot())))
    got = [twin.update({"level_m": v}, t) for t, v in series[cut:]]
    want = [live.update({"level_m": v}, t) for t, v in series[cut:]]
    assert got == want and any(want)


def test_a_lone_spike_never_reaches_the_fit():
    r = LevelForecast(level=4.5, window_s=1800.0)
    for i in range(31):
        v = 4.0 + 0.5 * i / 60.0  # 0.5 m/h from 4.0 m: 4.25 m now, 30 min to go
        f = r.update({"level_m": 9.0 if i == 20 else v}, 60.0 * i)
    assert max(y for _, y in r._fit.points()) < 4.3  # the median of three took its neighbour's value
    assert f.extra["eta_s"] == pytest.approx(1800.0, abs=60.0)
    assert f.extra["rate_per_hour"] == pytest.approx(0.5, abs=0.01)


def test_a_snapshot_of_the_old_layout_is_read():
    r = LevelForecast(level=4.5, window_s=1800.0)
    r.restore({"_current": None, "_buf": [[60.0 * i, 4.0 + 0.01 * i] for i in range(20)]})
    assert len(r._fit) == 20
    f = r.update({"level_m": 4.2}, 60.0 * 20)
    assert f is not None and "predicted to reach the warning level 4.50 m" in f.message


def test_a_forecast_fits_its_line_once_per_reading_with_the_same_floats(monkeypatch):
    """update() hands the line it tested against the horizon to estimate() instead of fitting it again."""
    fit, series = WindowedLineFit(window_s=1800.0), gappy_series(400, 7)
    for t, y in series:
        fit.add(t, y)
        a, b = fit.estimate(t), fit.estimate(t, fit.trend(t))
        assert (a is None) == (b is None)
        if a is not None:  # the same numbers, to the bit
            assert [getattr(a, k) for k in a.__slots__] == [getattr(b, k) for k in b.__slots__]
    fits = []
    trend = WindowedLineFit.trend
    monkeypatch.setattr(WindowedLineFit, "trend", lambda self, at: fits.append(at) or trend(self, at))
    r = LevelForecast(level=4.5, window_s=1800.0)
    for i in range(31):
        f = r.update({"level_m": 4.0 + 0.5 * i / 60.0}, 60.0 * i)
        assert fits.count(60.0 * i) <= 1, f"reading {i}: the line was fitted {fits.count(60.0 * i)} times"
    assert f is not None and f.extra["eta_s"] == pytest.approx(1800.0, abs=60.0)
