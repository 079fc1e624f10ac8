"""``cityeye eval nab``: run a detector over the NAB corpus and score it.

Example::

    cityeye eval nab --detector context_novelty --out /tmp/nab-results
    cityeye eval nab --cv          # leave-one-category-out cross-validation
    cityeye eval shapes            # the synthetic shape-anomaly suite
    cityeye eval shapes --proxy    # the hold-out proxy: the default beside discord-lite and rolling z-score
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

from evaluation.nab_scorer import PROFILES, load_windows, score_corpus

__all__ = ["add_arguments", "run", "PUBLISHED", "resolve_data_dir", "series_dir"]

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
    if path is None and not os.environ.get("CITYEYE_NAB_DATA"):
        candidates.append(REPO_ROOT.parent / p)  # a git worktree one level further down
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
    nab.add_argument("--cv", action="store_true",
                     help="leave-one-category-out: choose settings (a declared grid) and threshold on six "
                          "categories, score the seventh; prints all seven, their mean and the pooled score")
    nab.add_argument("--grid", default=None,
                     help="with --cv: JSON list of parameter dicts to choose from (default: the declared CV_GRID)")
    shapes = sub.add_parser("shapes", help="score detectors on the synthetic shape-anomaly suite (NAB-based)")
    shapes.add_argument("--detector", action="append", default=None,
                        help="registered detector name (repeatable; default: the default detector)")
    shapes.add_argument("--params", default="{}", help="JSON dict of detector hyperparameters")
    shapes.add_argument("--data", default=None, help="NAB directory (as for 'eval nab')")
    shapes.add_argument("--seed", type=int, default=0,
                        help="seed of the planted anomalies and of the series made in code")
    shapes.add_argument("--synthetic", action="store_true",
                        help="plant them in seeded city-like periodic series made in code (the tests' suite), not NAB")
    shapes.add_argument("--proxy", action="store_true",
                        help="the hold-out proxy (evaluation/holdout_proxy.py): daily, weekly and (without "
                             "--synthetic) NAB-based series; the default detector beside discord_lite and rolling_zscore")
    shapes.add_argument("--per-kind", type=int, default=10, help="cases per anomaly kind")
    shapes.add_argument("--jobs", type=int, default=None, help="worker processes (default: CPU count)")


def _fmt(v: float | None) -> str:
    return "" if v is None else f"{v:.1f}"


def series_dir(nab_dir: Path) -> Path:
    """Where the series CSVs of a NAB directory from :func:`resolve_data_dir` are: its ``data/``, or the
    directory itself when it is the ``data`` directory."""
    return nab_dir / "data" if (nab_dir / "data").is_dir() else nab_dir


def run(args: argparse.Namespace) -> int:
    from evaluation.nab_runner import run_corpus
    from detectors.catalog import DEFAULT_DETECTOR

    command = getattr(args, "eval_command", None)
    if command not in ("nab", "shapes"):
        print("usage: cityeye eval nab [--detector NAME] [--data DIR] [--out DIR] [--profile P] [--cv]\n"
              "       cityeye eval shapes [--detector NAME] [--data DIR | --synthetic] [--seed N] [--proxy]", file=sys.stderr)
        return 2
    if command == "shapes" and args.synthetic:
        return _run_shapes(args, None)
    try:
        nab_dir = resolve_data_dir(args.data)
    except FileNotFoundError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if command == "shapes":
        return _run_shapes(args, nab_dir)
    data_dir = series_dir(nab_dir)
    labels_path = Path(args.labels) if args.labels else nab_dir / "labels" / "combined_windows.json"
    windows = load_windows(labels_path)
    profiles = args.profile or list(PROFILES)
    params = json.loads(args.params or "{}")
    detectors = args.detector or [DEFAULT_DETECTOR]
    files = sorted(windows)  # the files the label file covers
    if args.cv:
        return _run_cv(args, data_dir, windows, profiles, params, detectors)

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
    print()
    print(f"Note: {DEFAULT_DETECTOR}'s settings were chosen by scoring variants on this same corpus, so its "
          "full-corpus figure is optimistic; 'cityeye eval nab --cv' chooses them on six categories and "
          "scores the seventh.")
    if args.json:
        Path(args.json).write_text(json.dumps(measured, indent=2))
    return 0


def _run_cv(args: argparse.Namespace, data_dir: Path, windows: dict, profiles: list[str],
            params: dict, detectors: list[str]) -> int:
    from evaluation.nab_cv import CV_GRID, cross_validate

    grid = json.loads(args.grid) if args.grid else list(CV_GRID)
    if not isinstance(grid, list) or not grid or not all(isinstance(g, dict) for g in grid):
        print("error: --grid must be a non-empty JSON list of parameter dicts", file=sys.stderr)
        return 2
    for name in detectors:
        t0 = time.perf_counter()
        report = cross_validate(data_dir, windows, name, grid, params, profiles, jobs=args.jobs)
        print(f"{name}: leave-one-category-out over {len(grid)} settings x "
              f"{len({f.category for f in report.folds})} categories, {time.perf_counter() - t0:.0f} s")
        print("grid: " + "; ".join(json.dumps(g, sort_keys=True) for g in grid))
        header = f"{'held-out category':24s}" + "".join(f"{_SHORT[p]:>10s}" for p in profiles) + "  chosen (standard)"
        print(header)
        print("-" * len(header))
        for cat in sorted({f.category for f in report.folds}):
            row = {f.profile: f for f in report.folds if f.category == cat}
            cells = "".join(f"{'n/a':>10s}" if row[p].score is None else f"{row[p].score:10.1f}" for p in profiles)
            std = row.get(profiles[0])
            print(f"{cat:24s}{cells}  {json.dumps(std.params, sort_keys=True)} @ {std.threshold:.3f}")
        print(f"{'mean (with windows)':24s}" + "".join(f"{report.mean(p):10.1f}" for p in profiles))
        print(f"{'pooled held-out':24s}" + "".join(f"{report.pooled(p):10.1f}" for p in profiles))
        print("(n/a: no label window in the category; its false positives count in the pooled score)")
        if args.json:
            Path(args.json).write_text(json.dumps([f.__dict__ for f in report.folds], indent=2))
    return 0


def _run_shapes(args: argparse.Namespace, nab_dir: Path | None) -> int:
    """The shape suite in NAB's stretches, or (``nab_dir`` None) in the synthetic bases of the tests."""
    from detectors.catalog import DEFAULT_DETECTOR
    from evaluation.shape_suite import KINDS, build_cases, run_suite, synthetic_cases

    params = json.loads(args.params or "{}")
    jobs = max(1, args.jobs or os.cpu_count() or 1)
    if args.proxy:
        return _run_proxy(args, nab_dir, params, jobs)
    if nab_dir is None:
        cases, where = synthetic_cases(seed=args.seed, per_kind=args.per_kind), "seeded synthetic periodic series"
    else:
        cases, where = build_cases(nab_dir, seed=args.seed, per_kind=args.per_kind), \
            "NAB's label-free periodic stretches"
    print(f"shape suite: {len(cases)} cases ({args.per_kind} per kind, seed {args.seed}) planted in {where}; hit = highest score after the warm-up within the anomaly "
          "+- max(100, its length)")
    header = f"{'detector':28s}{'hit rate':>10s}{'AUC-PR':>8s}" + "".join(f"{k:>14s}" for k in KINDS)
    print(header)
    print("-" * len(header))
    for name in args.detector or [DEFAULT_DETECTOR]:
        res = run_suite(cases, name, params, jobs=jobs)
        hits = sum(r.hit for r in res)
        per_kind = "".join(f"{sum(r.hit for r in res if r.kind == k):>8d} / {sum(r.kind == k for r in res):<3d}"
                           for k in KINDS)
        print(f"{name:28s}{100 * hits / len(res):9.0f}%{sum(r.auc_pr for r in res) / len(res):8.3f}{per_kind}")
    return 0


def _run_proxy(args: argparse.Namespace, nab_dir: Path | None, params: dict, jobs: int) -> int:
    """The hold-out proxy (``--proxy``): the detectors asked for, or the default beside the two baselines."""
    from detectors.catalog import DEFAULT_DETECTOR
    from evaluation.holdout_proxy import BASELINE_DETECTORS, proxy_cases, proxy_table, run_proxy

    cases = proxy_cases(seed=args.seed, per_kind=args.per_kind, nab_dir=nab_dir)
    detectors = args.detector or [DEFAULT_DETECTOR, *BASELINE_DETECTORS]
    print(f"hold-out proxy: {len(cases)} series (seed {args.seed}, {args.per_kind} per kind and family), one planted "
          "anomaly each; hit = highest score after the warm-up within the anomaly +- max(100, its length)")
    for line in proxy_table(run_proxy(cases, detectors, params, jobs=jobs)):
        print(line)
    return 0
