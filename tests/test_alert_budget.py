"""The anomaly check's threshold calibrated per sensor to an alert-rate budget (issue #11)."""

from __future__ import annotations

import json
import math
import random

import pytest

from detectors._calibration import ScoreQuantile
from detectors.catalog import make_detector
from detectors.threshold import ScoreThreshold

WEEK = 7 * 24 * 60  # readings a week at one a minute


def noisy_day_cycle(n: int, seed: int = 4):
    """A minute-by-minute signal with a daily cycle and heavy-tailed noise: normal data."""
    rng = random.Random(seed)
    for t in range(n):
        noise = rng.gauss(0, 3) * (4 if rng.random() < 0.02 else 1)
        yield 60 + 15 * math.sin(2 * math.pi * t / 1440) + noise


def findings_per_week(check: ScoreThreshold, n: int) -> list[int]:
    weeks = [0] * (n // WEEK + 1)
    for t, v in enumerate(noisy_day_cycle(n)):
        if check.process({"speed_kmh": v}, 60.0 * t) is not None:
            weeks[t // WEEK] += 1
    return weeks


def make_check(**kw) -> ScoreThreshold:
    return ScoreThreshold(make_detector("multiscale_novelty", field="speed_kmh"), field="speed_kmh",
                          min_count=60, name="traffic.speed_anomaly", **kw)


def test_budget_bounds_the_alert_rate_on_normal_data():
    n = 4 * WEEK
    fixed = findings_per_week(make_check(threshold=0.75), n)
    budget = findings_per_week(make_check(threshold=0.75, alerts_per_week=1, interval_s=60.0), n)
    # after the first week (uncalibrated: 0.9), about one finding a week at most
    assert max(budget[1:4]) <= 2, budget
    assert sum(fixed[1:4]) > sum(budget[1:4]), (fixed, budget)


def test_threshold_in_force_and_its_state():
    check = make_check(threshold=0.5, alerts_per_week=1, interval_s=600.0, uncalibrated_threshold=0.9)
    assert check.threshold_in_force() >= 0.9  # nothing counted yet
    for t, v in enumerate(noisy_day_cycle(2000)):
        check.process({"speed_kmh": v}, 600.0 * t)
    # more than a week (1008 readings) counted: the sensor's own quantile, never below the floor
    t_in_force = check.threshold_in_force()
    assert 0.5 <= t_in_force <= 1.0 and t_in_force != 0.9
    twin = check.clone()
    twin.restore(json.loads(json.dumps(check.snapshot())))
    assert twin.threshold_in_force() == t_in_force
    with pytest.raises(ValueError):
        make_check(alerts_per_week=0)


def test_score_quantile_is_bounded_and_forgets_slowly():
    q = ScoreQuantile(bins=100, horizon=1000)
    for _ in range(5000):
        q.add(0.2)
    for _ in range(600):
        q.add(0.8)
    assert q.total <= 1000
    assert q.upper(0.5) == 0.81  # recent scores weigh more: 0.8 is now over half
    assert len(json.dumps(q.snapshot())) < 600
