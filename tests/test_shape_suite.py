"""The synthetic shape-anomaly suite (issue #11): shape anomalies planted in NAB's label-free stretches."""

from __future__ import annotations

import numpy as np
import pytest

from evaluation.command import resolve_data_dir
from evaluation.shape_suite import KINDS, ShapeCase, average_precision, build_cases, run_suite, score_case

#: Floor on the default detector's hit rate on the suite (seed 0, 10 cases per kind). Measured
#: 35 % (14 / 40) when set. The previous default (main c68cbdd, no shape vote and unbounded
#: context sets) scores 37.5 % (15 / 40) on the same cases, so this floor does not show the
#: shape vote's worth (docs/anomaly.md); context_novelty scores 15 % (6 / 40), below it.
HIT_FLOOR = 0.30


@pytest.fixture(scope="module")
def cases() -> list[ShapeCase]:
    return build_cases(resolve_data_dir(None), seed=0, per_kind=10)


def test_cases_are_seeded_and_cover_every_kind(cases):
    again = build_cases(resolve_data_dir(None), seed=0, per_kind=10)
    assert [c.name for c in again] == [c.name for c in cases] and again[5].values == cases[5].values
    assert {c.kind for c in cases} == set(KINDS) and len(cases) == 40
    for c in cases:
        x = np.asarray(c.values)
        assert 32 <= c.length <= 400 and c.start + c.length < len(x)
        # a shape anomaly at normal values: within the range of the rest of the series (5 % slack)
        rest = np.concatenate((x[: c.start], x[c.start + c.length:]))
        slack = 0.05 * (rest.max() - rest.min())
        seg = x[c.start:c.start + c.length]
        assert rest.min() - slack <= seg.min() and seg.max() <= rest.max() + slack


def test_default_detector_finds_shape_anomalies(cases):
    results = run_suite(cases, "multiscale_novelty", jobs=2)
    rate = sum(r.hit for r in results) / len(results)
    assert rate >= HIT_FLOOR, f"hit rate {rate:.0%}"


def test_a_detector_without_shape_memory_scores_below_the_floor(cases):
    """The suite can fail: context_novelty (6 / 40 when the floor was set) is under it."""
    results = run_suite(cases, "context_novelty", jobs=2)
    assert sum(r.hit for r in results) / len(results) < HIT_FLOOR


def test_scoring_rules():
    case = ShapeCase("t", "waveform", tuple([0.0] * 2000), start=1500, length=50)
    s = np.zeros(2000)
    s[1640] = 1.0  # before 1500 + 50 + max(100, 50): a hit
    assert score_case(case, s).hit
    s[1640], s[1660] = 0.0, 1.0  # after it: a miss
    assert not score_case(case, s).hit
    s[1660], s[1000] = 0.0, 1.0
    assert not score_case(case, s).hit
    s[299] = 2.0  # inside the warm-up (the first 300 readings of 2000): ignored
    assert score_case(case, s).argmax == 1000
    assert average_precision(np.array([0.9, 0.8, 0.1]), np.array([True, False, True])) == pytest.approx((1 + 2 / 3) / 2)
