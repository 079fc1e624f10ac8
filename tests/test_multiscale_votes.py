"""The flat-run record vote and the magnitude statistics of ``multiscale_novelty``."""

from __future__ import annotations

import json
import math
import random

import pytest

from detectors._flat_run import FlatRunRecord
from detectors._multiscale_scalars import readable
from detectors.multiscale_novelty import MultiScaleNoveltyDetector
from tests.test_anomaly_detectors import drive


def busy_sensor(n: int, seed: int = 5) -> list[float]:
    """A busy counter with idle stretches of exactly 0 (20 to 60 readings each)."""
    rng = random.Random(seed)
    vals: list[float] = []
    while len(vals) < n:
        vals += [round(rng.uniform(20, 80), 1) for _ in range(rng.randint(40, 120))]
        vals += [0.0] * rng.randint(20, 60)
    return vals[:n]


def test_flat_run_record_votes_only_past_the_record_and_once_fired():
    rec = FlatRunRecord(min_run=5, margin=0.5)
    votes = []
    for v in [1.0] * 4 + [2.0] + [3.0] * 5 + [4.0] + [3.0] * 8:
        votes.append(rec.vote(v))
        rec.learn(v)
    # record 4 (first run; it cannot vote), then 5 threes: 5 <= 1.5 * 4, no vote;
    # the record becomes 5, eight threes vote from their 8th reading (> 7.5)
    assert votes.index(1.0) == 4 + 1 + 5 + 1 + 7
    rec.fired()
    assert rec.vote(3.0) == 0.0
    rec.learn(3.0)
    rec.learn(9.0)  # a new run: the record is now 9
    assert rec.snapshot()["record"] == 9
    assert FlatRunRecord(min_run=None).vote(3.0) == 0.0


def test_stuck_sensor_alarms_once_when_its_repeat_record_is_broken():
    vals = busy_sensor(3000)
    stuck = vals + [0.0] * 200 + busy_sensor(300, seed=9)
    det = MultiScaleNoveltyDetector()
    scores = drive(det, stuck)
    plain = drive(MultiScaleNoveltyDetector(flat_min_run=None), stuck)  # without the vote
    thr = det.rest_threshold
    record = max(len(run) for run in "".join("0" if v == 0.0 else "x" for v in vals).split("x"))
    assert 48 < 1.1 * record
    stuck_scores = scores[3000:3200]
    first = next(i for i, s in enumerate(stuck_scores) if s >= thr)
    assert first == math.floor(1.1 * record)  # once past 1.1 x the longest idle stretch, not at its start
    assert sum(s >= thr for s in stuck_scores) == 1  # one alarm per run
    assert max(plain[3000:3200]) < thr  # the views alone do not see it
    # idle stretches within the record add no alarms
    assert [i for i in range(1500, 3000) if scores[i] >= thr] == [i for i in range(1500, 3000) if plain[i] >= thr]


def test_flat_run_state_survives_snapshot_and_old_snapshots_restore():
    vals = busy_sensor(3000) + [0.0] * 200
    det = MultiScaleNoveltyDetector()
    drive(det, vals[:3020])  # mid-run of the stuck stretch
    state = json.loads(json.dumps(det.snapshot()))
    clone = MultiScaleNoveltyDetector()
    clone.restore(state)
    assert drive(clone, vals[3020:]) == drive(det, vals[3020:])
    old = dict(readable(state))  # every scalar under its name, as snapshots were before session 11
    assert old["flat"]["run"] > 0
    del old["flat"]  # a snapshot written before the flat-run vote existed
    older = MultiScaleNoveltyDetector()
    older.restore(old)
    assert readable(older.snapshot())["flat"] == {"last": None, "run": 0, "record": 0, "fired": False}


def test_every_view_measures_magnitude_over_the_same_number_of_readings():
    """The coarse views' running variance must have converged after a few thousand readings.

    With one smoothing constant per *block* (the former default), the
    12-reading view's variance was still building up after 12 000 readings
    and its ``z`` saturated, so every coarse alarm looked equally far off.
    """
    rng = random.Random(2)
    vals = [rng.gauss(0.0, 1.0) for _ in range(6000)]
    det = MultiScaleNoveltyDetector()
    drive(det, vals)
    for step, view in zip(det.steps, det._views):
        assert view.alpha == det.magnitude_alpha * step
        expected = 1.0 / step  # variance of the mean of `step` unit-variance readings
        assert 0.6 < view.snapshot()["var"] / expected < 1.5, step
    slow = MultiScaleNoveltyDetector(magnitude_alpha=0.001 / 12)
    drive(slow, vals)
    assert slow._views[2].snapshot()["var"] < 0.6 / 12  # about 500 blocks x 0.001 of the way
    assert not math.isnan(det.score_one({"value": 1.0}))


def test_a_raw_reading_needs_novelty_and_distance_to_alarm():
    """Novelty alone (a never-seen reading at the running mean) scores ``1 - magnitude_weight``.

    On NAB, raw-scale alarms close to the mean were mostly false positives
    (distance to the mean: median 3.6 standard deviations for false, 7.6 for
    true ones), so the raw view gives the distance a weight of 0.3: a new
    reading at the mean stays at 0.7, below the rest threshold.
    """
    vals = [0.0, 10.0] * 600  # running mean 5
    det = MultiScaleNoveltyDetector(steps=(1,), offsets=(0.0,))
    drive(det, vals)
    assert det.score_one({"value": 5.0}) == pytest.approx(1.0 - det.magnitude_weight, abs=0.01)
    assert det.score_one({"value": 5.0}) < det.rest_threshold
    # the former weight 0.1: the same reading votes 0.9, an alarm (reported in the alarm band without one)
    old = MultiScaleNoveltyDetector(steps=(1,), offsets=(0.0,), magnitude_weight=0.1, magnitude_scale=5.0,
                                    alarm_band=None)
    drive(old, vals)
    assert old.score_one({"value": 5.0}) == pytest.approx(0.9, abs=0.01)


def test_coarse_views_measure_block_means_in_the_readings_deviations():
    det = MultiScaleNoveltyDetector()
    raw, *coarse = det._views
    assert all(view._magnitude_ref is raw for view in coarse) and raw._magnitude_ref is None
    assert all(view._magnitude_ref is None for view in MultiScaleNoveltyDetector(coarse_magnitude_in_readings=False)._views)
    assert (raw.magnitude_weight, raw.magnitude_scale) == (det.magnitude_weight, det.magnitude_scale)
    assert {(v.magnitude_weight, v.magnitude_scale) for v in coarse} == {(det.coarse_magnitude_weight, det.coarse_magnitude_scale)}


@pytest.mark.parametrize("steps", [(1, 5, 10), (5, 1), (10, 1, 5)])
def test_learning_without_scoring_first_whatever_the_raw_views_place(steps):
    """The raw view learns last wherever it stands, so a coarse view measuring its
    block against the readings' statistics sees the same ones with or without a
    score_one first (with (5, 1) it used to see them after the raw view had learnt)."""
    kw = {"steps": steps, "offsets": (0.0,) * len(steps)}
    rng = random.Random(4)
    vals = [10 + 3 * math.sin(2 * math.pi * t / 20) + rng.gauss(0, 0.3) for t in range(600)]
    a, b = MultiScaleNoveltyDetector(**kw), MultiScaleNoveltyDetector(**kw)
    drive(a, vals)
    for i, v in enumerate(vals):
        if i % 3 == 0:
            b.score_one({"value": v + 1.0})  # a different value: its look-ups must not be reused
        b.learn_one({"value": v})
    assert json.dumps(a.snapshot(), sort_keys=True) == json.dumps(b.snapshot(), sort_keys=True)



def test_shape_vote_takes_its_periodic_offset_only_once_the_period_is_known():
    """``shape_periodic_offset`` applies on a signal whose seasonal view has found a
    period, from then on; on a signal without one the vote keeps ``shape_offset``."""
    rng = random.Random(11)
    periodic = [10 * math.sin(2 * math.pi * t / 48) + rng.gauss(0, 0.3) for t in range(3200)]
    for t in range(3000, 3048):  # one missing peak at normal values
        periodic[t] = min(periodic[t], 0.0)
    walk, level = [], 0.0
    for _ in range(3200):
        level += rng.gauss(0, 1)
        walk.append(level)
    kw = {"shape_offset": -0.1, "shape_periodic_offset": 0.1}
    plain = drive(MultiScaleNoveltyDetector(shape_offset=-0.1, shape_periodic_offset=None), periodic)
    det = MultiScaleNoveltyDetector(**kw)
    boosted = drive(det, periodic)
    assert det._seasonal._period == 48 // 12  # in the 12-reading view's blocks
    start = next(i for i in range(len(plain)) if plain[i] != boosted[i])
    assert start >= 12 * (det.season_warmup // 12)  # the period is estimated at the end of the warm-up
    assert max(boosted[3000:3100]) > max(plain[3000:3100])
    aperiodic = MultiScaleNoveltyDetector(**kw)
    assert drive(aperiodic, walk) == drive(MultiScaleNoveltyDetector(shape_offset=-0.1, shape_periodic_offset=None), walk)
    assert aperiodic._seasonal._period == 0


@pytest.mark.parametrize("range_growth", [3.0, None])
def test_one_spike_does_not_blind_the_views_to_a_later_shift(range_growth):
    """A daily cycle with one reading of 1e6, then (1500 readings later) a level shift of 3
    for 50 readings. Without a limit on how much one reading widens the views' ranges, the spike
    sets their quantisation grid (the raw view's for 6000 readings, the coarse views' for good)
    and the shift falls into the same bin as everything else: score 0. With the default limit
    (``range_growth`` 3) the shift scores above everything between the spike and it."""
    rng = random.Random(5)
    det = MultiScaleNoveltyDetector(range_growth=range_growth)
    scores = []
    for t in range(3050):
        v = 10 + 2 * math.sin(2 * math.pi * t / 96) + rng.gauss(0, 0.2)
        if t == 1500:
            v = 1e6
        if t >= 3000:
            v += 3.0
        scores.append(det.score_one({"value": v}))
        det.learn_one({"value": v})
    shift, between = max(scores[3000:]), max(scores[1600:3000])
    if range_growth is None:
        assert shift < 0.1
    else:
        assert shift > between and shift > 0.5
