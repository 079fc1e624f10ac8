"""Heap of one sensor's default checks, by the source line that allocated it.

One sensor of ``--kind`` runs through ``--readings`` readings; its snapshot is
restored into a fresh engine under :mod:`tracemalloc`, and the traced bytes
are printed in total and per allocating line (the top ``--top``). Figures
only: nothing here asserts sizes.

    .venv/bin/python bench/bench_model_heap.py [--kind traffic] [--readings 2000] [--top 12]
"""

from __future__ import annotations

import argparse
import gc
import os
import sys
import tracemalloc
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.bench_streams import KINDS, make_readings, make_registry  # noqa: E402
from streams.sensor_engine import SensorEngine  # noqa: E402

__all__ = ["heap_of_one_sensor", "main"]


def heap_of_one_sensor(kind: str, readings: int, top: int) -> tuple[int, list[tuple[str, int]]]:
    """Traced bytes of one restored ``kind`` sensor after ``readings`` readings, and the ``top`` allocating lines."""
    registry = make_registry(len(KINDS))
    engine = SensorEngine(registry)
    for r in make_readings(registry, readings * len(KINDS)):
        engine.process(r)
    sid = next(s for s in engine.sensor_ids() if engine.state(s).sensor.kind == kind)
    template = engine.snapshot(sid)
    fresh = SensorEngine(registry)
    gc.collect()
    tracemalloc.start(1)
    fresh.restore(template)
    gc.collect()
    snap = tracemalloc.take_snapshot()
    tracemalloc.stop()
    stats = snap.statistics("lineno")
    total = sum(s.size for s in stats)
    return total, [(f"{s.traceback[0].filename.rsplit('/', 2)[-2]}/{s.traceback[0].filename.rsplit('/', 1)[-1]}:"
                    f"{s.traceback[0].lineno}", s.size) for s in stats[:top]]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--kind", default="traffic", choices=KINDS)
    ap.add_argument("--readings", type=int, default=2000)
    ap.add_argument("--top", type=int, default=12)
    args = ap.parse_args(argv)
    print(f"load average {' '.join(f'{x:.2f}' for x in os.getloadavg())}; one {args.kind} sensor, "
          f"{args.readings} readings, restored from its snapshot")
    total, lines = heap_of_one_sensor(args.kind, args.readings, args.top)
    print(f"traced heap {total / 1024:.1f} KiB")
    for where, size in lines:
        print(f"  {size / 1024:9.1f} KiB  {where}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
