"""The hold-out proxy (issue #11): seeded daily and weekly series, one planted anomaly each, hit rate.

The tests build it without NAB (the ``nab`` family needs the data); ``cityeye eval shapes --proxy``
adds NAB's stretches (docs/anomaly.md has the figures).
"""

from __future__ import annotations

from collections import Counter

import numpy as np
import pytest

from evaluation.baseline_detectors import DiscordLite, RollingZScore, make_any_detector
from evaluation.holdout_proxy import FAMILIES, family_of, proxy_cases, proxy_table, run_proxy, weekly_bases
from launch.cli import main

#: Floor on the default detector's hits on the proxy below (seed 0, two cases per kind and family,
#: 16 series). Measured when set: the default 16 / 16 (the former score, without the alarm band:
#: 16 / 16), discord_lite 11 / 16, rolling_zscore 1 / 16.
DEFAULT_FLOOR = 13


@pytest.fixture(scope="module")
def small_proxy():
    cases = proxy_cases(seed=0, per_kind=2)
    return cases, run_proxy(cases, ["multiscale_novelty", "discord_lite", "rolling_zscore"], jobs=2)


def test_cases_are_seeded_one_anomaly_per_series_at_normal_values():
    cases = proxy_cases(seed=3, per_kind=1)
    assert Counter(family_of(c) for c in cases) == {"daily": 4, "weekly": 4}  # no NAB data: no nab family
    assert {(family_of(c), c.kind) for c in cases} == {(f, k) for f in ("daily", "weekly") for k in FAMILIES[f]}
    again, other = proxy_cases(seed=3, per_kind=1), proxy_cases(seed=4, per_kind=1)
    assert [c.values for c in again] == [c.values for c in cases]
    assert all(a.values != b.values for a, b in zip(cases, other))  # bases too come from the seed
    for c in cases:
        x = np.asarray(c.values)
        seg = x[c.start:c.start + c.length]
        assert x.min() <= seg.min() and seg.max() <= x.max() and c.start + c.length < len(x)


def test_weekly_bases_have_five_working_days_and_a_wrong_day_is_an_earlier_day_at_the_same_phase():
    bases, days = weekly_bases(seed=0, count=3)
    for (_, x), day in zip(bases, days):
        daily_means = x[: len(x) // day * day].reshape(-1, day).mean(axis=1)
        working = np.arange(len(daily_means)) % 7 < 5
        assert daily_means[working].min() > daily_means[~working].max()
    wrong = [c for c in proxy_cases(seed=0, per_kind=3) if c.kind == "wrong_day"]
    weekly = dict(weekly_bases(seed=0)[0])
    days = dict(zip(weekly, weekly_bases(seed=0)[1]))
    for c in wrong:
        base = c.name.split(":", 1)[1]
        x, day, y = weekly[base], days[base], np.asarray(c.values)
        seg = y[c.start:c.start + c.length]
        assert not np.allclose(seg, x[c.start:c.start + c.length])
        assert any(np.array_equal(seg, x[c.start - k * day:c.start - k * day + c.length]) for k in range(1, 15))


def test_the_default_finds_what_a_rolling_z_score_does_not(small_proxy):
    cases, results = small_proxy
    hits = {name: sum(r.hit for r in res) for name, res in results.items()}
    assert len(cases) == 16
    assert hits["multiscale_novelty"] >= DEFAULT_FLOOR
    # the anomalies are shapes at normal values: a level statistic misses them, a discord finds some
    assert hits["rolling_zscore"] <= 4 < hits["discord_lite"] < hits["multiscale_novelty"]
    lines = proxy_table(results)
    assert lines[0].split()[:4] == ["detector", "all", "daily", "weekly"]
    assert any(line.startswith("multiscale_novelty") and f"{hits['multiscale_novelty']} / 16" in line for line in lines)


def test_baselines_score_in_the_unit_interval_and_see_what_they_are_for():
    rng = np.random.default_rng(1)
    z = make_any_detector("rolling_zscore")
    assert isinstance(z, RollingZScore) and isinstance(make_any_detector("discord_lite"), DiscordLite)
    scores = []
    for t, v in enumerate(rng.normal(0, 1, 600)):
        v = 9.0 if t == 500 else float(v)
        scores.append(z.score_one({"value": v}))
        z.learn_one({"value": v})
    assert int(np.argmax(scores)) == 500 and 0 <= min(scores) and max(scores) < 1
    with pytest.raises(ValueError):
        make_any_detector("no_such_detector")


def test_cli_prints_the_default_beside_the_baselines(capsys):
    assert main(["eval", "shapes", "--proxy", "--synthetic", "--per-kind", "1", "--jobs", "1",
                 "--detector", "rolling_zscore", "--seed", "2"]) == 0
    out = capsys.readouterr().out
    assert "hold-out proxy: 8 series (seed 2" in out
    row = next(line for line in out.splitlines() if line.startswith("rolling_zscore"))
    assert " / 8 (" in row and row.count(" / 4") == 2  # all, then daily and weekly
    assert main(["eval", "shapes", "--proxy", "--data", "/nonexistent/nab"]) == 2
