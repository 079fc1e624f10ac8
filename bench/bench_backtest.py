"""Backtest throughput: one year of 15-minute readings for 100 gauges (3.5 M readings).

Prints, in one run on the same data:

* the bare per-sensor engine loop (``SensorEngine.process`` on every reading,
  default checks, one process) -- the baseline;
* ``cityeye backtest``'s work (evaluation.backtest.command.run_backtest):
  per-sensor engines with gap ticks in ``--workers`` processes, the
  dispatcher's lifecycle on every alert event, scoring.

Target (issue #9): the backtest in <= 120 s on this 2-core machine.

Usage: .venv/bin/python bench/bench_backtest.py [--gauges 100] [--days 365] [--workers 2]
"""

from __future__ import annotations

import argparse
import math
import os
import random
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from alerts.config import load_alerting_config  # noqa: E402
from cityeye.contracts import Reading  # noqa: E402
from cityeye.sensor_registry import Sensor, SensorRegistry  # noqa: E402
from detectors.rulebook import parse_rulebook  # noqa: E402
from evaluation.backtest.command import run_backtest  # noqa: E402
from evaluation.backtest.data import Dataset  # noqa: E402
from streams.sensor_engine import SensorEngine  # noqa: E402

INTERVAL = 900.0
START = 1_546_300_800.0  # 2019-01-01


def gauges(n: int) -> SensorRegistry:
    return SensorRegistry({f"g{i:03d}": Sensor(id=f"g{i:03d}", kind="water_level", district=f"d{i % 8}",
                                               lat=51.0, lon=0.0, interval_s=INTERVAL,
                                               levels={"warning_m": 2.0, "guaranteed_m": 2.6})
                           for i in range(n)})


def series(sensor_id: str, days: float) -> list[Reading]:
    """Tidal river: base 1 m, semi-diurnal 0.3 m, noise, a few floods a year, a gap or two."""
    rng = random.Random(sensor_id)
    n = int(days * 86400 / INTERVAL)
    floods = {rng.randrange(n) for _ in range(4)}
    out, surge, rising = [], 0.0, False
    for i in range(n):
        if i in floods:
            rising = True
        if rising:  # up 0.05 m a reading to 1.8 m above normal, then back down 0.01 m a reading
            surge += 0.05
            rising = surge < 1.8
        else:
            surge = max(0.0, surge - 0.01)
        if rng.random() < 0.0005:  # a lost hour now and then
            continue
        t = START + i * INTERVAL
        level = 1.0 + 0.3 * math.sin(2 * math.pi * t / 44712.0) + rng.gauss(0, 0.01) + surge
        out.append(Reading(sensor_id, "water_level", "d", t, {"level_m": round(level, 3)}, t, ""))
    return out


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--gauges", type=int, default=100)
    p.add_argument("--days", type=float, default=365.0)
    p.add_argument("--workers", type=int, default=min(2, os.cpu_count() or 1))
    args = p.parse_args()
    registry = gauges(args.gauges)
    t0 = time.perf_counter()
    ds = Dataset(registry, source="bench")
    for s in registry:
        ds.readings[s.id] = series(s.id, args.days)
    print(f"data: {ds.count:,} readings of {len(registry)} gauges, generated in {time.perf_counter() - t0:.1f} s")

    rulebook = parse_rulebook(None)
    engine = SensorEngine(registry, checks_factory=rulebook.checks_for)
    t0 = time.perf_counter()
    events = 0
    for rows in ds.readings.values():
        for r in rows:
            events += len(engine.process(r))
    bare = time.perf_counter() - t0
    print(f"bare engine loop, 1 process:        {bare:7.1f} s  {ds.count / bare:9,.0f} readings/s  "
          f"({events} alert events)")

    t0 = time.perf_counter()
    result, _, _ = run_backtest(ds, None, load_alerting_config(None), workers=args.workers)
    full = time.perf_counter() - t0
    s = result["summary"]
    print(f"backtest, engine + lifecycle, {args.workers} workers: {full:7.1f} s  {ds.count / full:9,.0f} readings/s  "
          f"({s['episodes']} episodes, {len(result['notifications'])} notifications, "
          f"{s['detected']}/{s['events']} crossings warned of)")
    print(f"target <= 120 s: {'met' if full <= 120 else 'NOT met'} ({full:.1f} s); "
          f"backtest / bare loop = {full / bare:.2f}")


if __name__ == "__main__":
    main()
