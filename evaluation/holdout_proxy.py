"""A proxy for issue #11's hidden hold-out, built from data the project may use.

The hold-out (kept outside the project) is about 56 labelled real series
from other domains (electric power demand, spacecraft telemetry, weather
stations' air temperature...), one anomaly each, each streamed once, score
then learn; a series is a *hit* when its highest score after the warm-up
lies within the anomaly ``± max(100, its length)``. Its source archive
(UCR / KDD Cup 2021) must not be used here, nor anything derived from it.
This proxy scores a detector the same way (one anomaly per series, hit
rate; :func:`evaluation.shape_suite.score_case`) on three families of
series, ``per_kind`` cases of each of four kinds per family:

``daily``
    :func:`~evaluation.shape_suite.synthetic_bases`: city-like daily cycles
    (a 24-288-reading period, a weekly swing, drift, noise), with the shape
    suite's four kinds (stretched, missing peak, phase jump, waveform).
``weekly``
    :func:`weekly_bases`: power-demand-like series, a working-day profile on
    five days of seven and a low one on the other two, with a stretched
    day, a missing peak, a changed waveform, and a ``wrong_day`` (a working
    day played like a day off, or the reverse: the hold-out's power demand
    anomalies, which are new only against the weekly pattern).
``nab``
    NAB's longest label-free periodic stretches
    (:func:`~evaluation.shape_suite.nab_bases`), with the four shape kinds;
    left out when the NAB data is not at hand (``nab_dir=None``).

Every family's bases *and* anomalies come from ``seed``: settings are chosen
on some seeds and reported on others. A proxy is not the hold-out: its
anomalies are planted, at normal values, into regular series.
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np

from evaluation.shape_suite import KINDS, ShapeCase, ShapeResult, cases_from_bases, nab_bases, run_suite, \
    synthetic_bases

__all__ = ["FAMILIES", "BASELINE_DETECTORS", "weekly_bases", "proxy_cases", "family_of", "run_proxy",
           "proxy_table"]

#: The proxy's families and the kinds planted in each.
FAMILIES: dict[str, tuple[str, ...]] = {
    "daily": KINDS,
    "weekly": ("stretched", "missing_peak", "waveform", "wrong_day"),
    "nab": KINDS,
}

#: The hold-out table's simple methods, printed beside the default (evaluation.baseline_detectors).
BASELINE_DETECTORS = ("discord_lite", "rolling_zscore")


def weekly_bases(seed: int = 0, count: int = 12, length: int = 4000) -> tuple[list[tuple[str, np.ndarray]], list[int]]:
    """``count`` seeded power-demand-like series and their day lengths (readings).

    A day of 24, 48 or 96 readings; on five days of seven a working-day plateau
    (smooth edges, starting at 25-35 % and ending at 65-80 % of the day, a
    lunch dip) over a base load, on the other two 15-35 % of it; each day's
    height varies by a few per cent, the base load drifts slowly, noise 2-6 %
    of the plateau.
    """
    rng = np.random.default_rng(seed)
    bases, days = [], []
    for i in range(count):
        day = int(rng.choice([24, 48, 96]))
        t = np.arange(length)
        phase = (t % day) / day
        on, off = rng.uniform(0.25, 0.35), rng.uniform(0.65, 0.80)
        plateau = 1 / (1 + np.exp(-(phase - on) * 40)) - 1 / (1 + np.exp(-(phase - off) * 40))
        plateau -= rng.uniform(0.0, 0.3) * np.exp(-(((phase - (on + off) / 2) / 0.03) ** 2))  # lunch
        day_index = t // day
        working = (day_index % 7) < 5
        height = np.where(working, 1.0, rng.uniform(0.15, 0.35)) * (1 + rng.normal(0, 0.04, day_index[-1] + 1))[day_index]
        base = 0.3 + np.cumsum(rng.normal(0, 0.002, length))
        x = 50.0 + 20.0 * (base + height * plateau + rng.normal(0, rng.uniform(0.02, 0.06), length))
        bases.append((f"weekly-{seed}-{i}-d{day}", x))
        days.append(day)
    return bases, days


def proxy_cases(seed: int = 0, per_kind: int = 10, nab_dir: str | Path | None = None) -> list[ShapeCase]:
    """The proxy's cases, named ``family/kind/i:base`` (every family of :data:`FAMILIES`; ``nab`` with ``nab_dir``)."""
    weekly, days = weekly_bases(seed)
    sources = {
        "daily": (synthetic_bases(seed), None),
        "weekly": (weekly, days),
        "nab": (None if nab_dir is None else nab_bases(nab_dir), None),
    }
    cases = []
    for family, kinds in FAMILIES.items():
        bases, periods = sources[family]
        if bases is None:
            continue
        for c in cases_from_bases(bases, seed, per_kind, kinds=kinds, periods=periods):
            cases.append(ShapeCase(f"{family}/{c.name}", c.kind, c.values, c.start, c.length))
    return cases


def family_of(result: ShapeResult | ShapeCase) -> str:
    """The family a proxy case or result belongs to (its name's first part)."""
    return result.name.split("/", 1)[0]


def run_proxy(cases: Sequence[ShapeCase], detectors: Sequence[str], params: Mapping[str, Any] | None = None,
              jobs: int = 1) -> dict[str, list[ShapeResult]]:
    """Every case through every detector; ``params`` go to the catalog's detectors only."""
    from evaluation.baseline_detectors import BASELINES

    return {name: run_suite(cases, name, None if name in BASELINES else params, jobs=jobs) for name in detectors}


def proxy_table(results: Mapping[str, Sequence[ShapeResult]]) -> list[str]:
    """Lines of a table: each detector's hits of every family and in all, and its mean AUC-PR."""
    first = next(iter(results.values()))
    families = [f for f in FAMILIES if any(family_of(r) == f for r in first)]
    sizes = Counter(family_of(r) for r in first)
    header = f"{'detector':24s}{'all':>18s}" + "".join(f"{f:>12s}" for f in families) + f"{'AUC-PR':>9s}"
    lines = [header, "-" * len(header)]
    for name, res in results.items():
        hits = Counter(family_of(r) for r in res if r.hit)
        total = sum(hits.values())
        cells = "".join(f"{f'{hits[f]} / {sizes[f]}':>12s}" for f in families)
        auc = sum(r.auc_pr for r in res) / len(res)
        lines.append(f"{name:24s}{f'{total} / {len(res)} ({100 * total / len(res):.0f} %)':>18s}{cells}{auc:9.3f}")
    return lines
