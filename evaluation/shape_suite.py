"""A synthetic shape-anomaly suite built from NAB's normal stretches.

NAB's labels reward level and rate changes; the anomalies a city's sensors
also show are *shape* changes at normal values (a daily pattern stretched,
a peak that does not come, a cycle that jumps phase, a waveform that
changes). This suite plants such anomalies, seeded and generated in code,
into the label-free stretches of the NAB data files, and scores a detector
the way the project's hold-out is scored:

* every case is one series streamed once, score then learn, one fresh
  detector per case and no per-case settings;
* **hit**: the highest score after the warm-up (NAB's probationary
  period, ``min(15 %, 750)`` readings) lies within the anomaly
  ``± max(100, its length)`` readings (the first such reading on ties);
* **AUC-PR**: average precision of the scores after the warm-up, the
  anomaly's readings being the positives.

Only stretches with a period (an autocorrelation peak above 0.3 at a lag
of 8 readings or more) are used: a shape anomaly needs a shape. The four
kinds (``m`` = the anomaly's length, the stretch's period clipped to
32-400 readings):

``stretched``
    ``m`` readings replaced by the same stretch played at 0.6 times the speed.
``missing_peak``
    ``m`` readings clipped to their median: the peaks of a cycle do not come.
``phase_jump``
    from the anomaly on, the series continues half a period later.
``waveform``
    ``m`` readings replaced by a square wave of the same mean and standard
    deviation (normal amplitude, other shape).

Every value stays within the stretch's own range, so the anomalies are not
level excursions.
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np

from evaluation.nab_runner import list_files, read_file
from evaluation.nab_scorer import probation_length

__all__ = ["KINDS", "PLANTABLE", "ShapeCase", "ShapeResult", "build_cases", "nab_bases", "synthetic_bases", "synthetic_cases",
           "cases_from_bases",
           "run_case", "score_case", "run_suite", "average_precision"]

KINDS = ("stretched", "missing_peak", "phase_jump", "waveform")
#: Every kind :func:`cases_from_bases` plants: :data:`KINDS` and ``wrong_day`` (a period replaced by
#: the earlier one at the same phase least like it, for bases with a weekly pattern: ``evaluation.holdout_proxy``)
PLANTABLE = KINDS + ("wrong_day",)


@dataclass(frozen=True)
class ShapeCase:
    """One series with one planted shape anomaly at ``[start, start + length)``."""

    name: str
    kind: str
    values: tuple[float, ...]
    start: int
    length: int


@dataclass(frozen=True)
class ShapeResult:
    """A case's outcome: hit or not, its average precision, where the highest score was."""

    name: str
    kind: str
    hit: bool
    auc_pr: float
    argmax: int


def _period(x: np.ndarray) -> int:
    """Lag of the highest local autocorrelation peak above 0.3 (0: none)."""
    x = x - x.mean()
    den = float(x @ x)
    n = len(x)
    if den <= 0 or n < 16:
        return 0
    f = np.fft.rfft(x, 2 * n)
    acf = np.fft.irfft(f * np.conj(f))[: n // 2 + 1] / den
    best, lag = 0.3, 0
    for k in range(2, n // 2):
        if acf[k] > best and acf[k] >= acf[k - 1] and acf[k] >= acf[k + 1]:
            best, lag = float(acf[k]), k
    return lag


def _clean_stretches(n: int, windows: Sequence[tuple[int, int]]) -> list[tuple[int, int]]:
    """Index ranges ``[a, b)`` of a file outside its label windows."""
    out, a = [], 0
    for lo, hi in sorted(windows):
        if lo > a:
            out.append((a, lo))
        a = max(a, hi + 1)
    if a < n:
        out.append((a, n))
    return out


def _window_rows(timestamps: list[str], windows: Sequence[Sequence[str]]) -> list[tuple[int, int]]:
    """Label windows (timestamps) as row ranges (inclusive)."""
    from datetime import datetime

    ts = np.array([datetime.fromisoformat(t).timestamp() for t in timestamps])
    rows = []
    for lo, hi in windows:
        a = datetime.fromisoformat(str(lo).replace(".000000", "")).timestamp()
        b = datetime.fromisoformat(str(hi).replace(".000000", "")).timestamp()
        rows.append((int(np.searchsorted(ts, a)), int(np.searchsorted(ts, b, side="right")) - 1))
    return rows


def _plant(x: np.ndarray, kind: str, a: int, m: int, period: int, rng: random.Random) -> np.ndarray:
    y = x.copy()
    seg = x[a:a + m]
    if kind == "stretched":
        pos = np.arange(m) * 0.6
        y[a:a + m] = np.interp(pos, np.arange(m), seg)
    elif kind == "missing_peak":
        y[a:a + m] = np.minimum(seg, np.median(seg))
    elif kind == "phase_jump":
        shift = max(1, (period or m) // 2)
        y[a:len(x) - shift] = x[a + shift:]
        y = y[: len(x) - shift]
    elif kind == "waveform":
        half = max(2, m // (2 * rng.choice((1, 2, 3))))
        sign = np.where((np.arange(m) // half) % 2 == 0, 1.0, -1.0)
        y[a:a + m] = seg.mean() + seg.std() * sign
    elif kind == "wrong_day":
        # the same phase of one of the last 14 periods, the one least like it (a weekday played as a Sunday)
        starts = [a - k * period for k in range(1, 15) if a - k * period >= 0]
        b = max(starts, key=lambda b: float(np.sum((x[b:b + m] - seg) ** 2)))
        y[a:a + m] = x[b:b + m]
    else:
        raise ValueError(f"unknown shape anomaly kind {kind!r}; known: {', '.join(PLANTABLE)}")
    lo, hi = x.min(), x.max()
    return np.clip(y, lo, hi)


def build_cases(nab_dir: str | Path, seed: int = 0, per_kind: int = 10, max_len: int = 4000,
                min_len: int = 1500) -> list[ShapeCase]:
    """``per_kind`` cases of every kind, from NAB files' longest label-free stretches (seeded)."""
    return cases_from_bases(nab_bases(nab_dir, max_len, min_len), seed, per_kind)


def nab_bases(nab_dir: str | Path, max_len: int = 4000, min_len: int = 1500) -> list[tuple[str, np.ndarray]]:
    """``(file, stretch)``: each NAB file's longest label-free stretch, when it is long enough and has a period."""
    nab_dir = Path(nab_dir)
    data_dir = nab_dir / "data"
    windows = _raw_windows(nab_dir)
    bases: list[tuple[str, np.ndarray]] = []
    for rel in list_files(data_dir):
        ts, vals = read_file(data_dir / rel)
        rows = _window_rows(ts, windows.get(rel, []))
        a, b = max(_clean_stretches(len(vals), rows), key=lambda r: r[1] - r[0])
        x = np.asarray(vals[a:b], dtype=float)
        x = x[:max_len]
        if len(x) >= min_len and np.isfinite(x).all() and x.std() > 0 and _period(x) >= 8:
            bases.append((rel, x))
    return bases


def synthetic_bases(seed: int = 0, count: int = 12, length: int = 3000) -> list[tuple[str, np.ndarray]]:
    """``count`` seeded periodic series with no anomaly, for machines without the NAB data (the tests).

    Each is a city-like daily cycle: a period of 24-288 readings, a waveform of
    a few random harmonics (one or two peaks, like rush hours or a tide),
    a weekly swing of its amplitude, a slow drift and noise of 3-10 % of the
    amplitude.
    """
    rng = np.random.default_rng(seed)
    bases = []
    for i in range(count):
        period = int(rng.choice([24, 48, 96, 144, 288]))
        t = np.arange(length)
        phase = 2 * np.pi * t / period
        wave = sum(rng.uniform(0.2, 1.0) / k * np.sin(k * phase + rng.uniform(0, 2 * np.pi))
                   for k in range(1, int(rng.integers(2, 5)) + 1))
        weekly = 1.0 + rng.uniform(0.0, 0.3) * np.sin(2 * np.pi * t / (7 * period))
        drift = np.cumsum(rng.normal(0, 0.002, length))
        x = 10.0 + wave * weekly + drift + rng.normal(0, rng.uniform(0.03, 0.10) * np.ptp(wave), length)
        bases.append((f"synthetic-{seed}-{i}-p{period}", x))
    return bases


def synthetic_cases(seed: int = 0, per_kind: int = 10) -> list[ShapeCase]:
    """The tests' suite (``cityeye eval shapes --synthetic``): the :data:`KINDS` planted in
    :func:`synthetic_bases`, bases and anomalies both drawn from ``seed``."""
    return cases_from_bases(synthetic_bases(seed), seed, per_kind)


def cases_from_bases(bases: Sequence[tuple[str, np.ndarray]], seed: int = 0, per_kind: int = 10,
                     kinds: Sequence[str] = KINDS, periods: Sequence[int] | None = None) -> list[ShapeCase]:
    """``per_kind`` cases of every kind of ``kinds``, each planted in a base drawn at random (seeded).

    ``periods``: each base's period (the anomaly's length, clipped to 32-400, and
    the phase jump's and wrong day's period); ``None``: its autocorrelation peak.
    """
    rng = random.Random(seed)
    cases = []
    for kind in kinds:
        for i in range(per_kind):
            index = rng.randrange(len(bases))
            rel, x = bases[index]
            warm = int(probation_length(len(x)))
            period = _period(x) if periods is None else int(periods[index])
            m = min(400, max(32, period))
            a = rng.randrange(max(warm + 200, len(x) // 2), len(x) - m - 100)
            y = _plant(x, kind, a, m, period, rng)
            cases.append(ShapeCase(f"{kind}/{i}:{rel}", kind, tuple(float(v) for v in y), a, m))
    return cases


def _raw_windows(nab_dir: Path) -> dict[str, list[list[str]]]:
    import json

    return json.loads((nab_dir / "labels" / "combined_windows.json").read_text())


def average_precision(scores: np.ndarray, labels: np.ndarray) -> float:
    """Area under the precision-recall curve (average precision; ties broken pessimistically)."""
    pos = int(labels.sum())
    if pos == 0:
        return 0.0
    order = np.lexsort((labels, -scores))  # by score, highest first; negatives first on ties
    hits = labels[order]
    tp = np.cumsum(hits)
    precision = tp / np.arange(1, len(hits) + 1)
    return float((precision * hits).sum() / pos)


def score_case(case: ShapeCase, scores: Sequence[float]) -> ShapeResult:
    """Hit and AUC-PR of ``scores`` (one per reading of ``case``)."""
    s = np.asarray(scores, dtype=float)
    warm = int(probation_length(len(s)))
    margin = max(100, case.length)
    after = s[warm:]
    top = warm + int(np.argmax(after))
    hit = case.start - margin <= top < case.start + case.length + margin
    labels = np.zeros(len(after), dtype=bool)
    labels[case.start - warm:case.start - warm + case.length] = True
    return ShapeResult(case.name, case.kind, bool(hit), average_precision(after, labels), top)


def run_case(case: ShapeCase, detector: str, params: Mapping[str, Any] | None = None) -> ShapeResult:
    """Stream ``case`` through a fresh ``detector`` (score, then learn) and score it.

    ``detector``: a name of the catalog or of :data:`evaluation.baseline_detectors.BASELINES`.
    """
    from evaluation.baseline_detectors import make_any_detector

    det = make_any_detector(detector, **dict(params or {}))
    field = getattr(det, "field", "value")
    scores = [det.score_learn_one({field: v}) for v in case.values]
    return score_case(case, scores)


def _star(args: tuple) -> ShapeResult:
    return run_case(*args)


def run_suite(cases: Sequence[ShapeCase], detector: str, params: Mapping[str, Any] | None = None,
              jobs: int = 1) -> list[ShapeResult]:
    """Every case through ``detector`` (``jobs`` worker processes)."""
    tasks = [(c, detector, dict(params or {})) for c in cases]
    if jobs <= 1:
        return [_star(t) for t in tasks]
    import multiprocessing as mp

    with mp.get_context("fork").Pool(jobs) as pool:
        return pool.map(_star, tasks, chunksize=1)
