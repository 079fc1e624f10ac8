"""A scorer for the Numenta Anomaly Benchmark (NAB v1.1 semantics).

Re-implemented from the published rules of NAB's ``sweeper`` (no NAB code is
copied):

* **Probationary period** -- the first ``min(floor(0.15 * N), 0.15 * 5000)``
  rows of a file are not scored (detectors may calibrate there).
* **Label windows** -- each labelled window ``[start, end]`` (timestamps,
  inclusive). A detection inside a window is a true positive worth
  ``tpWeight * S(p) / S(-1)`` where ``p = -(right - i + 1) / width`` is the
  relative position in the window and ``S(p) = 2 / (1 + exp(5 p)) - 1`` the
  scaled sigmoid (``S(p) = -1`` for ``p >= 3``). Only the *best* (earliest)
  detection of a window counts; a window without detection costs
  ``-fnWeight``.
* **False positives** -- a detection outside every window costs
  ``fpWeight * S(p)`` with ``p = |i - prev_right| / (prev_width - 1)`` for
  the closest preceding window (so FPs just after a window cost less), or
  ``-fpWeight`` when no window precedes it. Every FP row counts.
* **Threshold** -- one threshold for the whole corpus: rows with
  ``score >= threshold`` are detections; the threshold is swept over every
  distinct score of the corpus (plus 1.1 = "detect nothing") and the one
  with the best total raw score is kept (highest threshold on ties).
* **Normalisation** -- ``100 * (raw - null) / (perfect - null)`` where
  ``null`` is the raw score of the null detector (no detection:
  ``-fnWeight`` per scorable window) and ``perfect`` is ``tpWeight`` per
  window.

Profiles (NAB ``config/profiles.json``): ``standard`` (TP 1, FP 0.11, FN 1),
``reward_low_FP_rate`` (FP 0.22) and ``reward_low_FN_rate`` (FN 2).
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Iterable, Mapping, Sequence

import numpy as np

__all__ = [
    "PROFILES",
    "PROBATION_PERCENT",
    "scaled_sigmoid",
    "probation_length",
    "load_windows",
    "FileSweep",
    "sweep_file",
    "ProfileResult",
    "score_corpus",
    "sweep_corpus",
    "score_sweeps",
]

#: NAB's application profiles (cost matrices).
PROFILES: dict[str, dict[str, float]] = {
    "standard": {"tpWeight": 1.0, "fpWeight": 0.11, "fnWeight": 1.0},
    "reward_low_FP_rate": {"tpWeight": 1.0, "fpWeight": 0.22, "fnWeight": 1.0},
    "reward_low_FN_rate": {"tpWeight": 1.0, "fpWeight": 0.11, "fnWeight": 2.0},
}

PROBATION_PERCENT = 0.15

#: Window id of a row outside every window, and of a probationary row.
NO_WINDOW = -1
PROBATIONARY = -2


def scaled_sigmoid(position: float) -> float:
    """NAB's scaled sigmoid of a relative position in/after a window.

    >>> round(scaled_sigmoid(-1.0), 5), scaled_sigmoid(0.0), scaled_sigmoid(3.0)
    (0.98661, 0.0, -1.0)
    """
    if position >= 3.0:
        return -1.0
    return 2.0 / (1.0 + math.exp(5.0 * position)) - 1.0


def probation_length(n_rows: int, percent: float = PROBATION_PERCENT) -> float:
    """Rows ``i < probation_length(n)`` are not scored.

    >>> probation_length(1000), probation_length(100000)
    (150, 750.0)
    """
    return min(math.floor(percent * n_rows), percent * 5000)


def _ts(value: str | datetime) -> datetime:
    return value if isinstance(value, datetime) else datetime.fromisoformat(str(value).strip())


def load_windows(path: str | Path) -> dict[str, list[tuple[datetime, datetime]]]:
    """Read NAB's ``combined_windows.json``: ``{relative path: [(start, end), ...]}``."""
    with open(path) as f:
        raw = json.load(f)
    return {k: [(_ts(a), _ts(b)) for a, b in v] for k, v in raw.items()}


@dataclass
class FileSweep:
    """Per-row scoring material of one file (profile independent).

    ``window[i]`` is the corpus-unique id of the window row ``i`` is in,
    :data:`NO_WINDOW` or :data:`PROBATIONARY`; ``tp_unit[i]`` the unweighted
    TP value ``S(p) / S(-1)`` (in windows) and ``fp_unit[i]`` the unweighted
    FP value ``S(p)`` (outside windows).
    """

    name: str
    scores: np.ndarray
    window: np.ndarray
    tp_unit: np.ndarray
    fp_unit: np.ndarray
    n_windows: int


def sweep_file(
    name: str,
    timestamps: Sequence[str | datetime],
    scores: Sequence[float],
    windows: Iterable[tuple[str | datetime, str | datetime]],
    window_id_start: int = 0,
    probation_percent: float = PROBATION_PERCENT,
) -> FileSweep:
    """Label every row of one file as NAB's sweeper does."""
    ts = [_ts(t) for t in timestamps]
    n = len(ts)
    if len(scores) != n:
        raise ValueError("timestamps and scores differ in length")
    max_tp = scaled_sigmoid(-1.0)
    window = np.full(n, NO_WINDOW, dtype=np.int64)
    tp_unit = np.zeros(n)
    fp_unit = np.zeros(n)
    # window limits -> row index ranges (inclusive)
    spans: list[tuple[int, int]] = []
    for start, end in sorted((_ts(a), _ts(b)) for a, b in windows):
        lo = next((i for i, t in enumerate(ts) if t >= start), None)
        hi = next((i for i in range(n - 1, -1, -1) if ts[i] <= end), None)
        if lo is not None and hi is not None and hi >= lo:
            spans.append((lo, hi))
    prev_right: int | None = None
    prev_width: float | None = None
    k = 0
    wid = window_id_start
    i = 0
    while i < n:
        if k < len(spans) and i == spans[k][0]:
            lo, hi = spans[k]
            width = float(hi - lo + 1)
            for j in range(lo, hi + 1):
                window[j] = wid
                tp_unit[j] = scaled_sigmoid(-(hi - j + 1) / width) / max_tp
            prev_right, prev_width = hi, width
            wid += 1
            k += 1
            i = hi + 1
            continue
        if prev_right is None:
            pos = 3.0
        else:
            pos = abs(prev_right - i) / (prev_width - 1) if prev_width > 1 else 3.0
        fp_unit[i] = scaled_sigmoid(pos)
        i += 1
    prob = probation_length(n, probation_percent)
    n_prob = min(n, int(math.ceil(prob)))
    window[:n_prob] = PROBATIONARY
    return FileSweep(name, np.asarray(scores, dtype=float), window, tp_unit, fp_unit, len(spans))


@dataclass
class ProfileResult:
    """Scores of one detector under one profile."""

    profile: str
    threshold: float
    raw: float
    null: float
    perfect: float
    normalized: float
    per_file: dict[str, dict[str, float]] = field(default_factory=dict)


def _sweep_thresholds(sweeps: Sequence[FileSweep], cost: Mapping[str, float]):
    """Return (thresholds desc, raw scores) for every corpus threshold."""
    s = np.concatenate([f.scores for f in sweeps]) if sweeps else np.zeros(0)
    win = np.concatenate([f.window for f in sweeps]) if sweeps else np.zeros(0, int)
    tpu = np.concatenate([f.tp_unit for f in sweeps]) if sweeps else np.zeros(0)
    fpu = np.concatenate([f.fp_unit for f in sweeps]) if sweeps else np.zeros(0)
    keep = win != PROBATIONARY
    s, win, tpu, fpu = s[keep], win[keep], tpu[keep], fpu[keep]
    s = np.nan_to_num(s, nan=0.0)
    order = np.argsort(-s, kind="stable")
    s, win, tpu, fpu = s[order], win[order], tpu[order], fpu[order]
    fn_w, fp_w, tp_w = cost["fnWeight"], cost["fpWeight"], cost["tpWeight"]
    scorable = np.unique(win[win >= 0])
    null = -fn_w * len(scorable)
    delta = np.where(win == NO_WINDOW, fpu * fp_w, 0.0)
    best: dict[int, float] = {}
    for idx in np.flatnonzero(win >= 0):
        w = int(win[idx])
        v = tpu[idx] * tp_w
        cur = best.get(w, -fn_w)
        if v > cur:
            delta[idx] += v - cur
            best[w] = v
    total = null + np.cumsum(delta)
    # a threshold's score includes every row with score >= threshold
    last_of_group = np.flatnonzero(np.r_[s[1:] != s[:-1], True]) if len(s) else np.zeros(0, int)
    thresholds = np.r_[1.1, s[last_of_group]]
    raws = np.r_[null, total[last_of_group]]
    return thresholds, raws, null


def _score_at(f: FileSweep, threshold: float, cost: Mapping[str, float]) -> dict[str, float]:
    scorable = f.window != PROBATIONARY
    det = scorable & (np.nan_to_num(f.scores, nan=0.0) >= threshold)
    fp_rows = det & (f.window == NO_WINDOW)
    fp = float(np.sum(f.fp_unit[fp_rows]) * cost["fpWeight"])
    tp = fn = 0.0
    n_tp = n_fn = 0
    for w in np.unique(f.window[f.window >= 0]):
        rows = det & (f.window == w)
        if rows.any():
            tp += max(float(np.max(f.tp_unit[rows])) * cost["tpWeight"], -cost["fnWeight"])
            n_tp += 1
        else:
            fn -= cost["fnWeight"]
            n_fn += 1
    return {"score": tp + fp + fn, "tp_windows": n_tp, "fn_windows": n_fn,
            "fp_rows": int(fp_rows.sum())}


def score_corpus(
    results: Mapping[str, tuple[Sequence[str | datetime], Sequence[float]]],
    windows: Mapping[str, Iterable[tuple[str | datetime, str | datetime]]],
    profiles: Iterable[str] = tuple(PROFILES),
    probation_percent: float = PROBATION_PERCENT,
) -> dict[str, ProfileResult]:
    """Score a detector's results on a corpus, NAB style.

    ``results`` maps a file's relative path (``category/file.csv``) to its
    ``(timestamps, anomaly scores)``; ``windows`` maps the same paths to their
    label windows (a file absent from ``windows`` has none).

    >>> ts = [f"2020-01-01 00:{m:02d}:00" for m in range(40)]
    >>> win = {"a/b.csv": [(ts[20], ts[29])]}
    >>> perfect = [1.0 if i == 20 else 0.0 for i in range(40)]
    >>> r = score_corpus({"a/b.csv": (ts, perfect)}, win)
    >>> round(r["standard"].normalized, 6), round(r["reward_low_FN_rate"].normalized, 6)
    (100.0, 100.0)
    >>> r = score_corpus({"a/b.csv": (ts, [0.5] * 40)}, win)
    >>> r["standard"].normalized, r["standard"].threshold
    (0.0, 1.1)
    """
    return score_sweeps(sweep_corpus(results, windows, probation_percent), profiles)


def sweep_corpus(
    results: Mapping[str, tuple[Sequence[str | datetime], Sequence[float]]],
    windows: Mapping[str, Iterable[tuple[str | datetime, str | datetime]]],
    probation_percent: float = PROBATION_PERCENT,
) -> list[FileSweep]:
    """Every file's :class:`FileSweep` (window ids unique over the corpus), sorted by name."""
    sweeps: list[FileSweep] = []
    wid = 0
    for name in sorted(results):
        ts, sc = results[name]
        f = sweep_file(name, ts, sc, windows.get(name, []), wid, probation_percent)
        wid += f.n_windows
        sweeps.append(f)
    return sweeps


def score_sweeps(
    sweeps: Sequence[FileSweep],
    profiles: Iterable[str] = tuple(PROFILES),
    thresholds: Mapping[str, float] | None = None,
) -> dict[str, ProfileResult]:
    """Score files already swept (:func:`sweep_corpus`; any subset of a corpus).

    The threshold of a profile is swept over the files' scores, or, when
    ``thresholds`` gives it, fixed (cross-validation: a threshold chosen on
    other files).
    """
    n_windows = sum(f.n_windows for f in sweeps)
    out: dict[str, ProfileResult] = {}
    for prof in profiles:
        cost = PROFILES[prof]
        # the null detector misses every window not wholly in a probationary period
        null = -cost["fnWeight"] * sum(len(np.unique(f.window[f.window >= 0])) for f in sweeps)
        if thresholds is not None and prof in thresholds:
            threshold = float(thresholds[prof])
            per_file = {f.name: _score_at(f, threshold, cost) for f in sweeps}
            raw = sum(r["score"] for r in per_file.values())
        else:
            levels, raws, null = _sweep_thresholds(sweeps, cost)
            k = int(np.argmax(raws))  # first max = highest threshold on ties
            threshold, raw = float(levels[k]), float(raws[k])
            per_file = {f.name: _score_at(f, threshold, cost) for f in sweeps}
        perfect = cost["tpWeight"] * n_windows
        norm = 100.0 * (raw - null) / (perfect - null) if perfect != null else 0.0
        out[prof] = ProfileResult(prof, threshold, raw, null, perfect, norm, per_file)
    return out
