"""Run an :class:`~detectors.base.AnomalyDetector` over the NAB corpus.

Each file gets a fresh detector (one configuration for the whole corpus);
every reading is scored *then* learnt, so the score at row ``t`` only uses
rows ``<= t``. Results are written in NAB's format,
``<out>/<category>/<file>.csv`` with columns ``timestamp,value,anomaly_score``.
"""

from __future__ import annotations

import csv
import multiprocessing as mp
import os
import time
from pathlib import Path
from typing import Any, Iterable, Mapping

__all__ = ["list_files", "read_file", "run_file", "run_corpus"]


def list_files(data_dir: str | Path, only: Iterable[str] | None = None) -> list[str]:
    """Relative paths ``category/file.csv`` of the corpus (sorted)."""
    data_dir = Path(data_dir)
    files = sorted(p.relative_to(data_dir).as_posix() for p in data_dir.glob("*/*.csv"))
    if only is not None:
        wanted = set(only)
        files = [f for f in files if f in wanted]
    return files


def read_file(path: str | Path) -> tuple[list[str], list[float]]:
    """``(timestamps, values)`` of one NAB data file."""
    ts: list[str] = []
    vals: list[float] = []
    with open(path, newline="") as f:
        reader = csv.reader(f)
        next(reader)
        for row in reader:
            if not row:
                continue
            ts.append(row[0])
            try:
                vals.append(float(row[1]))
            except ValueError:
                vals.append(float("nan"))
    return ts, vals


def run_file(
    rel_path: str,
    data_dir: str | Path,
    detector: str,
    params: Mapping[str, Any] | None = None,
    out_dir: str | Path | None = None,
) -> tuple[str, list[str], list[float], float]:
    """Score one file; returns ``(rel_path, timestamps, scores, seconds)``."""
    from detectors.catalog import make_detector

    ts, vals = read_file(Path(data_dir) / rel_path)
    det = make_detector(detector, **dict(params or {}))
    field = getattr(det, "field", "value")
    scores: list[float] = []
    t0 = time.perf_counter()
    for v in vals:
        x = {field: v}
        scores.append(float(det.score_learn_one(x)))
    elapsed = time.perf_counter() - t0
    if out_dir is not None:
        out = Path(out_dir) / rel_path
        out.parent.mkdir(parents=True, exist_ok=True)
        with open(out, "w", newline="") as f:
            w = csv.writer(f)
            w.writerow(["timestamp", "value", "anomaly_score"])
            for t, v, s in zip(ts, vals, scores):
                w.writerow([t, _fmt(v), repr(s)])
    return rel_path, ts, scores, elapsed


def _fmt(v: float) -> str:
    if v != v:
        return ""
    return str(int(v)) if float(v).is_integer() else repr(v)


def _star(args: tuple) -> tuple[str, list[str], list[float], float]:
    return run_file(*args)


def run_corpus(
    data_dir: str | Path,
    detector: str,
    params: Mapping[str, Any] | None = None,
    out_dir: str | Path | None = None,
    files: Iterable[str] | None = None,
    jobs: int | None = None,
) -> tuple[dict[str, tuple[list[str], list[float]]], float]:
    """Run ``detector`` over every file; returns ``({path: (ts, scores)}, cpu seconds)``.

    ``jobs`` worker processes (default: ``os.cpu_count()``, at most the number
    of files); ``jobs=1`` runs in this process.
    """
    data_dir = Path(data_dir)
    rel = list_files(data_dir, files)
    # biggest files first, for a better spread over the workers
    rel.sort(key=lambda r: -(data_dir / r).stat().st_size)
    tasks = [(r, str(data_dir), detector, dict(params or {}), None if out_dir is None else str(out_dir)) for r in rel]
    jobs = max(1, min(jobs or os.cpu_count() or 1, len(tasks) or 1))
    if jobs == 1:
        done = [_star(t) for t in tasks]
    else:
        ctx = mp.get_context("fork") if "fork" in mp.get_all_start_methods() else mp.get_context()
        with ctx.Pool(jobs) as pool:
            done = pool.map(_star, tasks, chunksize=1)
    results = {r: (ts, sc) for r, ts, sc, _ in done}
    return results, sum(e for *_, e in done)
