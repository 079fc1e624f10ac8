"""Per-detector cost: microseconds per reading (score + learn, one ``score_learn_one``) and state size.

Prints, for every registered detector and for River's plain
``MinMaxScaler | HalfSpaceTrees`` measured in the same run, the time per
reading on a synthetic seasonal series (the median of ``--runs`` runs,
interleaved: run 1 of every detector, then run 2, ...) and the bytes of
state per sensor (length of the JSON snapshot after a run). ``--nab`` adds
the NAB scores (full corpus; a few minutes). Figures only: nothing here
asserts timings.

    .venv/bin/python bench/bench_detectors.py [--n 20000] [--runs 5] [--nab]
"""

from __future__ import annotations

import argparse
import json
import math
import random
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from detectors.catalog import DEFAULT_DETECTOR, DETECTORS, make_detector  # noqa: E402


def readings(n: int, seed: int = 0) -> list[dict[str, float]]:
    rng = random.Random(seed)
    out = []
    for t in range(n):
        v = 50 + 20 * math.sin(2 * math.pi * t / 288) + rng.gauss(0, 2)
        if rng.random() < 0.002:
            v += rng.choice((-1, 1)) * 40
        out.append({"value": v})
    return out


def bench(det, xs) -> float:
    score_learn = det.score_learn_one
    t0 = time.perf_counter()
    for x in xs:
        score_learn(x)
    return 1e6 * (time.perf_counter() - t0) / len(xs)


def river_plain(xs) -> float:
    from river import anomaly, compose, preprocessing

    model = compose.Pipeline(preprocessing.MinMaxScaler(), anomaly.HalfSpaceTrees(seed=42))
    t0 = time.perf_counter()
    for x in xs:
        model.score_one(x)
        model.learn_one(x)
    return 1e6 * (time.perf_counter() - t0) / len(xs)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=20000, help="readings per detector")
    ap.add_argument("--runs", type=int, default=5, help="runs per detector (the median is printed)")
    ap.add_argument("--nab", action="store_true", help="also score each detector on NAB")
    args = ap.parse_args()
    xs = readings(args.n)
    print(f"{args.n} readings (5-min seasonal series with spikes), one sensor, score + learn each, "
          f"median of {args.runs} interleaved runs")
    times: dict[str, list[float]] = {name: [] for name in [*DETECTORS, "river"]}
    sizes: dict[str, int] = {}
    for _ in range(args.runs):
        for name in DETECTORS:
            det = make_detector(name)
            times[name].append(bench(det, xs))
            sizes[name] = len(json.dumps(det.snapshot()))
        times["river"].append(river_plain(xs))
    print(f"{'detector':32s}{'us/reading':>12s}{'(min-max)':>16s}{'state bytes':>14s}")
    for name, runs in times.items():
        label = "river MinMaxScaler|HST (plain)" if name == "river" else (
            name + (" (default)" if name == DEFAULT_DETECTOR else ""))
        size = f"{sizes[name]:14d}" if name in sizes else f"{'-':>14s}"
        print(f"{label:32s}{statistics.median(runs):12.1f}{f'({min(runs):.1f}-{max(runs):.1f})':>16s}{size}")
    if args.nab:
        from launch.cli import main as cli

        cli(["eval", "nab", *sum((["--detector", n] for n in DETECTORS), [])])
    return 0


if __name__ == "__main__":
    sys.exit(main())
