"""Record every score of the default detectors over NAB, and compare a later run float for float.

A speed-up of an anomaly model must not change a single score. ``record``
runs every registered detector (``detectors.catalog.DETECTORS``, default
parameters) over the NAB files, the way ``cityeye eval nab`` does
(``evaluation.nab_runner.run_corpus``: a fresh detector per file, each
reading scored then learnt), and writes every score to a ``.npz`` file (one
float64 array per detector and file). ``compare`` runs them again (the code
on ``PYTHONPATH`` / in this checkout) and reports how many scores are
bit-identical to the recording (NaN equals NaN), and the first differences.
The exit status is 0 only when every score is identical.

To compare two checkouts, record with one and compare with the other::

    cd /tmp/main-clone && PYTHONPATH=$PWD .venv/bin/python /path/to/bench/score_identity.py record /tmp/main.npz
    cd worktree && PYTHONPATH=$PWD .venv/bin/python bench/score_identity.py compare /tmp/main.npz
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

import numpy as np

__all__ = ["record_scores", "compare_scores", "main"]

#: key of one detector's scores on one file in the .npz
_SEP = "::"


def _ensure_importable() -> None:
    """Put this checkout on ``sys.path`` unless ``PYTHONPATH`` already chose one."""
    if not os.environ.get("PYTHONPATH"):
        sys.path.insert(0, str(Path(__file__).resolve().parent.parent))


def record_scores(data_dir: Path, detectors: list[str], files: list[str] | None = None,
                  jobs: int | None = None) -> dict[str, np.ndarray]:
    """``{"<detector>::<category/file.csv>": scores}`` of every detector on every NAB file of ``data_dir``."""
    from evaluation.nab_runner import run_corpus

    out: dict[str, np.ndarray] = {}
    for name in detectors:
        t0 = time.perf_counter()
        results, cpu = run_corpus(data_dir, name, None, None, files=files, jobs=jobs)
        n = 0
        for rel, (_, scores) in sorted(results.items()):
            out[f"{name}{_SEP}{rel}"] = np.asarray(scores, dtype=np.float64)
            n += len(scores)
        print(f"{name}: {len(results)} files, {n} scores, {1e6 * cpu / max(n, 1):.1f} us/reading CPU, "
              f"{time.perf_counter() - t0:.1f} s wall", flush=True)
    return out


def compare_scores(recorded: dict[str, np.ndarray], measured: dict[str, np.ndarray],
                   show: int = 5) -> tuple[int, int, list[str]]:
    """``(identical scores, compared scores, differences)``: scores compared bit for bit
    (NaN equals NaN); a series missing on one side or of another length counts all its
    scores as different. ``differences`` describes at most ``show`` of them."""
    same = total = 0
    notes: list[str] = []
    for key in sorted(set(recorded) | set(measured)):
        a, b = recorded.get(key), measured.get(key)
        if a is None or b is None or len(a) != len(b):
            total += max(len(x) for x in (a, b) if x is not None)
            if len(notes) < show:
                notes.append(f"{key}: {'missing' if a is None or b is None else 'length'} "
                             f"{None if a is None else len(a)} != {None if b is None else len(b)}")
            continue
        equal = a.view(np.int64) == b.view(np.int64)
        equal |= np.isnan(a) & np.isnan(b)
        total += len(a)
        same += int(equal.sum())
        for i in np.flatnonzero(~equal)[: max(0, show - len(notes))]:
            notes.append(f"{key}[{i}]: recorded {a[i]!r}, now {b[i]!r}")
    return same, total, notes


def main(argv: list[str] | None = None) -> int:
    _ensure_importable()
    from detectors.catalog import DETECTORS
    from evaluation.command import resolve_data_dir, series_dir

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("mode", choices=("record", "compare"))
    ap.add_argument("scores", help="the .npz of recorded scores (written by record, read by compare)")
    ap.add_argument("--data", default=None, help="NAB directory (as for 'cityeye eval nab')")
    ap.add_argument("--detector", action="append", default=None,
                    help="detector name (repeatable; default: every registered detector)")
    ap.add_argument("--file", action="append", default=None, help="only this category/file.csv (repeatable)")
    ap.add_argument("--jobs", type=int, default=None, help="worker processes (default: CPU count)")
    args = ap.parse_args(argv)
    nab_dir = resolve_data_dir(args.data)
    data_dir = series_dir(nab_dir)
    with open("/proc/loadavg") as f:
        print(f"load average {' '.join(f.read().split()[:3])}; NAB at {data_dir}", flush=True)
    if args.mode == "record":
        scores = record_scores(data_dir, args.detector or list(DETECTORS), args.file, args.jobs)
        np.savez_compressed(args.scores, **scores)
        print(f"recorded {sum(len(s) for s in scores.values())} scores in {args.scores}")
        return 0
    with np.load(args.scores) as stored:
        recorded = {k: stored[k] for k in stored.files}
    names = args.detector or sorted({k.split(_SEP, 1)[0] for k in recorded})
    files = args.file or sorted({k.split(_SEP, 1)[1] for k in recorded})
    recorded = {k: v for k, v in recorded.items() if k.split(_SEP, 1)[0] in names and k.split(_SEP, 1)[1] in files}
    measured = record_scores(data_dir, names, files, args.jobs)
    same, total, notes = compare_scores(recorded, measured)
    print(f"{same} of {total} scores identical" + ("" if same == total else f"; {total - same} differ:"))
    for note in notes:
        print("  " + note)
    return 0 if same == total else 1


if __name__ == "__main__":
    sys.exit(main())
