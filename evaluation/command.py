"""``cityeye eval nab``: run a detector over the NAB corpus and score it.

Example::

    cityeye eval nab --detector context_novelty --out /tmp/nab-results
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

from evaluation.nab_scorer import PROFILES, load_windows, score_corpus

__all__ = ["add_arguments", "run", "PUBLISHED", "resolve_data_dir"]

REPO_ROOT = Path(__file__).resolve().parents[1]
DEFAULT_DATA = "../shared/datasets/nab"

#: Published NAB v1.1 scoreboard (standard, reward_low_FP_rate, reward_low_FN_rate),
#: from the NAB README; None where not quoted here.
PUBLISHED: dict[str, tuple[float | None, float | None, float | None]] = {
    "ARTime": (74.9, None, None),
    "Numenta HTM": (70.5, 62.6, 75.2),
    "CAD OSE": (69.9, 67.0, 73.2),
    "Windowed Gaussian": (39.6, 20.9, 47.4),
    "Random": (11.0, 1.2, 19.5),
    "Null": (0.0, 0.0, 0.0),
}

_SHORT = {"standard": "standard", "reward_low_FP_rate": "low_FP", "reward_low_FN_rate": "low_FN"}


def resolve_data_dir(path: str | None) -> Path:
    """The NAB directory (holding ``data/`` and ``labels/``).

    ``path`` defaults to ``$CITYEYE_NAB_DATA``, then :data:`DEFAULT_DATA`. A
    relative path is tried against the current directory, then the repo root.
    """
    p = Path(path or os.environ.get("CITYEYE_NAB_DATA") or DEFAULT_DATA)
    candidates = [p] if p.is_absolute() else [Path.cwd() / p, REPO_ROOT / p]
    for c in candidates:
        if (c / "data").is_dir() or c.name == "data" and c.is_dir():
            return c.resolve()
    raise FileNotFoundError(
        f"NAB data not found at {', '.join(map(str, candidates))} (pass --data DIR or set CITYEYE_NAB_DATA)"
    )


def add_arguments(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="eval_command", metavar="BENCHMARK")
    nab = sub.add_parser("nab", help="score a detector on the Numenta Anomaly Benchmark")
    nab.add_argument("--detector", action="append", default=None,
                     help="registered detector name (repeatable; default: the default detector)")
    nab.add_argument("--params", default="{}", help="JSON dict of detector hyperparameters")
    nab.add_argument("--data", default=None,
                     help="NAB directory with data/ and labels/ (default: $CITYEYE_NAB_DATA, else "
                          f"{DEFAULT_DATA} relative to the CWD or the repo root)")
    nab.add_argument("--labels", default=None,
                     help="label windows JSON (default: <data>/labels/combined_windows.json)")
    nab.add_argument("--out", default=None, help="write NAB-format result files under OUT/<detector>/")
    nab.add_argument("--profile", action="append", choices=sorted(PROFILES), default=None,
                     help="profile(s) to score (default: all three)")
    nab.add_argument("--jobs", type=int, default=None, help="worker processes (default: CPU count)")
    nab.add_argument("--json", default=None, help="also write the scores as JSON to this file")


def _fmt(v: float | None) -> str:
    return "" if v is None else f"{v:.1f}"


def run(args: argparse.Namespace) -> int:
    from evaluation.nab_runner import run_corpus
    from detectors.catalog import DEFAULT_DETECTOR

    if getattr(args, "eval_command", None) != "nab":
        print("usage: cityeye eval nab [--detector NAME] [--data DIR] [--out DIR] [--profile P]",
              file=sys.stderr)
        return 2
    try:
        nab_dir = resolve_data_dir(args.data)
    except FileNotFoundError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    data_dir = nab_dir / "data" if (nab_dir / "data").is_dir() else nab_dir
    labels_path = Path(args.labels) if args.labels else nab_dir / "labels" / "combined_windows.json"
    windows = load_windows(labels_path)
    profiles = args.profile or list(PROFILES)
    params = json.loads(args.params or "{}")
    detectors = args.detector or [DEFAULT_DETECTOR]
    files = sorted(windows)  # the files the label file covers

    measured: dict[str, dict[str, float]] = {}
    for name in detectors:
        out = None if args.out is None else Path(args.out) / name
        t0 = time.perf_counter()
        results, cpu = run_corpus(data_dir, name, params, out, files=files, jobs=args.jobs)
        wall = time.perf_counter() - t0
        scores = score_corpus(results, windows, profiles)
        n_rows = sum(len(ts) for ts, _ in results.values())
        measured[name] = {p: r.normalized for p, r in scores.items()}
        measured[name]["_threshold"] = scores[profiles[0]].threshold
        print(f"{name}: {len(results)} files, {n_rows} readings, "
              f"{1e6 * cpu / max(n_rows, 1):.1f} us/reading, {wall:.1f} s wall"
              + (f", results in {out}" if out else ""))

    header = f"{'detector':32s}" + "".join(f"{_SHORT[p]:>10s}" for p in profiles)
    print()
    print(f"NAB scores ({labels_path.name}; {len(files)} files)")
    print(header)
    print("-" * len(header))
    for name, sc in measured.items():
        print(f"{name + ' (measured)':32s}" + "".join(f"{sc[p]:10.1f}" for p in profiles))
    order = list(PROFILES)
    for name, pub in PUBLISHED.items():
        print(f"{name + ' (published)':32s}" + "".join(f"{_fmt(pub[order.index(p)]):>10s}" for p in profiles))
    if args.json:
        Path(args.json).write_text(json.dumps(measured, indent=2))
    return 0
