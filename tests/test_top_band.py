"""The reported score of the default detector: ordinary alarms in a band, top votes above it unpenalised."""

from __future__ import annotations

import random

import pytest

from detectors._top_band import alarm_band, score_reporter
from detectors.multiscale_novelty import MultiScaleNoveltyDetector
from tests.test_anomaly_detectors import drive


def test_votes_map_below_the_band_into_it_and_to_the_top():
    report = score_reporter((0.75, 0.95), tiebreak=0.05, penalty=0.01)
    votes = [0.0, 0.3, 0.7499, 0.75, 0.8, 0.9, 0.99, 0.9999]
    scores = [report(v, 0.0, 0.0) for v in votes]
    assert scores == sorted(scores) and scores[:3] == votes[:3]  # below the band: as voted
    assert all(0.75 <= s < 0.95 for s in scores[3:])  # ordinary alarms: within the band
    assert report(0.875, 0.0, 0.0) == pytest.approx(0.85)  # linearly
    tops = [report(v, d, alarms) for v in (1.0, 1.4) for d in (0.0, 0.5, 1.0) for alarms in (0.0, 7.0)]
    assert all(0.95 <= s <= 1.0 for s in tops)
    assert report(1.0, 0.5, 7.0) == report(1.0, 0.5, 0.0) == pytest.approx(0.975)  # no penalty at the top
    assert report(0.9, 0.0, 7.0) == pytest.approx(report(0.9, 0.0, 0.0) - 0.07)  # the penalty below it
    assert report(0.1, 0.0, 20.0) == 0.0


def test_without_a_band_every_vote_carries_the_penalty():
    report = score_reporter(None, tiebreak=0.05, penalty=0.01)
    assert report(0.9, 0.0, 0.0) == 0.9
    assert report(1.2, 1.0, 3.0) == pytest.approx(0.97)
    with pytest.raises(ValueError):
        alarm_band((0.95, 0.75))
    with pytest.raises(ValueError):
        MultiScaleNoveltyDetector(alarm_band=(0.5, 1.5))


def heavy_tailed(n: int, seed: int = 4) -> list[float]:
    """A noisy sensor whose outliers keep it alarming (about two alarms in memory at its end)."""
    rng = random.Random(seed)
    return [rng.gauss(0, 1) / max(abs(rng.gauss(0, 1)), 0.05) ** 0.7 for _ in range(n)]


def test_a_sensor_that_keeps_alarming_keeps_the_top_of_the_scale_for_its_strongest_vote():
    vals = heavy_tailed(3000)
    spike = {"value": 50 * max(map(abs, vals))}  # beyond every view's range: a top vote
    det = MultiScaleNoveltyDetector()
    scores = drive(det, vals)
    assert det._alarms > 1.0
    ordinary = [s for s in scores if 0.75 <= s < 0.95]
    assert len(ordinary) >= 5 and max(scores) <= 1.0
    top = det.score_one(spike)
    assert top >= 0.95 and top > max(ordinary)
    old = MultiScaleNoveltyDetector(alarm_band=None)
    drive(old, vals)
    # without the band, the same vote is lowered by the alarms before it, below the top's floor
    assert old.score_one(spike) == pytest.approx(top - old.alarm_penalty * old._alarms * old._decay)
    assert old.score_one(spike) < 0.95
