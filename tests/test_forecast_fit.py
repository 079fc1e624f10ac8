"""The forecast's plain-Python fit for few points gives the numpy fit's numbers bit for bit."""

from __future__ import annotations

import random

import numpy as np

from detectors.forecast import LevelForecast, _small_fit, theil_sen


def numpy_fit(ts: list[float], ys: list[float], now: float) -> tuple[float, ...]:
    arr = np.asarray(list(zip(ts, ys)), dtype=float)
    tc, y = arr[:, 0] - now, arr[:, 1]
    slope, value = theil_sen(tc, y)
    resid = y - (value + slope * tc)
    sigma = 1.4826 * float(np.median(np.abs(resid - np.median(resid))))
    tm = float(tc.mean())
    return slope, value, sigma, tm, float(((tc - tm) ** 2).sum())


def test_small_fit_is_bit_identical_to_the_numpy_fit():
    rng = random.Random(7)
    for _ in range(5000):
        n = rng.randint(3, 7)
        ts = sorted(rng.uniform(1e9, 2e9) + rng.uniform(0, 5000) for _ in range(n))
        ts = sorted(ts[0] + (t - ts[0]) % 5000 for t in ts)
        if rng.random() < 0.1:
            ts[1] = ts[0]  # two readings at one time: their pair has no slope
        ys = [rng.gauss(3.0, 1.0) for _ in range(n)]
        now = ts[-1] + rng.choice([0.0, 10.0])
        assert _small_fit([t - now for t in ts], ys) == numpy_fit(ts, ys, now)


def test_a_15_minute_gauge_gets_the_same_forecasts_on_either_path(monkeypatch):
    series = [(i * 900.0, 3.0 + 0.1 * i + 0.03 * ((i * 7) % 5)) for i in range(40)]
    fast = LevelForecast(level=5.5, window_s=4500.0)
    got = [fast.update({"level_m": v}, t) for t, v in series]
    monkeypatch.setattr("detectors.forecast._SMALL_FIT", 0)  # every fit through numpy
    slow = LevelForecast(level=5.5, window_s=4500.0)
    want = [slow.update({"level_m": v}, t) for t, v in series]
    assert [f and f.message for f in got] == [f and f.message for f in want]
    assert [f and f.extra for f in got] == [f and f.extra for f in want]
    assert any(got)
