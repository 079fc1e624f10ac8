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


class CountingThreshold(ScoreThreshold):
    """A budgeted check that counts how often it computes its threshold in force."""

    computed = 0

    def threshold_in_force(self) -> float:
        self.computed += 1
        return super().threshold_in_force()


def test_scores_below_the_floor_skip_the_calibrated_threshold_and_decide_the_same():
    """A score under ``threshold`` (the floor) is no finding whatever the calibration: the
    threshold in force is not computed for it, and every decision and the histogram are
    those of deciding each reading against :meth:`threshold_in_force`."""
    kw = dict(threshold=0.75, alerts_per_week=20, interval_s=600.0, field="speed_kmh", min_count=60,
              uncalibrated_threshold=0.75)
    check = CountingThreshold(make_detector("multiscale_novelty", field="speed_kmh"), **kw)
    shadow = ScoreThreshold(make_detector("multiscale_novelty", field="speed_kmh"), **kw)
    below = findings = 0
    for t, v in enumerate(noisy_day_cycle(3000)):
        x = {"speed_kmh": v if t % 500 else v + 200.0}  # a few spikes: findings
        before = shadow.threshold_in_force()  # what the reading is decided against
        finding = check.process(x, 600.0 * t)
        score = shadow.detector.score_one(x)
        assert shadow.process(x, 600.0 * t) is None or score >= before
        assert (finding is None) == (score < before or t < kw["min_count"]), t
        below += t >= kw["min_count"] and score < kw["threshold"]
        findings += finding is not None
    assert findings > 0 and below > 2000
    assert check.computed <= 3000 - kw["min_count"] - below
    assert check.threshold_in_force() == shadow.threshold_in_force()
    assert check.snapshot()["_quantile"] == shadow.snapshot()["_quantile"]


def test_clip01_keeps_usual_scores_and_clips_the_rest():
    from detectors.threshold import _clip01

    assert [_clip01(s) for s in (0.5, 1.0, 1.5, -2.0, float("nan"), "x", 1)] == [0.5, 1.0, 1.0, 0.0, 0.0, 0.0, 1.0]
    assert math.copysign(1.0, _clip01(-0.0)) == 1.0  # -0.0 is reported as 0.0, as max(0.0, s) gives
