"""Per-detector cost: microseconds per reading (score + learn) and state size.

Prints, for every registered detector and for River's plain
``MinMaxScaler | HalfSpaceTrees`` measured in the same run, the time per
reading on a synthetic seasonal series and the bytes of state per sensor
(length of the JSON snapshot after the run). ``--nab`` adds the NAB scores
(full corpus; a few minutes). Figures only: nothing here asserts timings.

    .venv/bin/python bench/bench_detectors.py [--n 20000] [--nab]
"""

from __future__ import annotations

import argparse
import json
import math
import random
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
    t0 = time.perf_counter()
    for x in xs:
        det.score_one(x)
        det.learn_one(x)
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
    ap.add_argument("--nab", action="store_true", help="also score each detector on NAB")
    args = ap.parse_args()
    xs = readings(args.n)
    print(f"{args.n} readings (5-min seasonal series with spikes), one sensor, score + learn each")
    print(f"{'detector':32s}{'us/reading':>12s}{'state bytes':>14s}")
    for name in DETECTORS:
        det = make_detector(name)
        us = bench(det, xs)
        size = len(json.dumps(det.snapshot()))
        tag = " (default)" if name == DEFAULT_DETECTOR else ""
        print(f"{name + tag:32s}{us:12.1f}{size:14d}")
    print(f"{'river MinMaxScaler|HST (plain)':32s}{river_plain(xs):12.1f}{'-':>14s}")
    if args.nab:
        from launch.cli import main as cli

        cli(["eval", "nab", *sum((["--detector", n] for n in DETECTORS), [])])
    return 0


if __name__ == "__main__":
    sys.exit(main())
