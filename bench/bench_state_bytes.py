"""Largest serialised state per sensor *throughout* a long stream, not only at its end.

Streams ``--n`` readings (default 100 000) of several signals through

* ``model``: the default anomaly detector (``multiscale_novelty``) alone,
* ``check``: the built-in ``traffic.speed_anomaly`` check
  (:class:`~detectors.threshold.ScoreThreshold` around the default detector),
* a whole sensor of each kind with its default checks
  (:class:`~streams.sensor_engine.SensorEngine`), the signal as every numeric
  field of the kind,

and samples the serialised snapshot every ``--every`` readings (and after the
last). Printed per signal and target: the largest size and the reading it was
at, in two measures: ``worker``, the bytes the worker stores (compact JSON of
the engine snapshot with its ``topic`` / ``partition``, Faust's ``json``
codec) and ``json``, ``len(json.dumps(...))`` with the default separators
(what ``tests/test_anomaly_state.py`` asserts; a few hundred bytes more).
Figures only: nothing here asserts.

Signals: ``noise`` (white, unrounded), ``walk`` (random walk), ``nab`` (NAB's
files one after another, ``CITYEYE_NAB_DATA``; skipped without it),
``periodic`` (a daily cycle of 288 readings plus noise), ``spikes``
(heavy-tailed: Student-t with one degree of freedom), ``levels`` (a new
level every 50 readings, never seen before, plus noise) and ``variety``
(values over six orders of magnitude, either sign); ``period_noise`` is the
adversarial one: a daily cycle of 96 readings for 2 400 readings (the seasonal
view finds its period and keeps seasonal context sets), then noise, which fills
every context set.

    .venv/bin/python bench/bench_state_bytes.py [--n 100000] [--every 1000] [--signals noise,walk]
"""

from __future__ import annotations

import argparse
import csv
import json
import math
import os
import random
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from cityeye.contracts import Reading  # noqa: E402
from cityeye.sensor_registry import Sensor, SensorRegistry  # noqa: E402
from detectors.catalog import DEFAULT_DETECTOR, make_detector  # noqa: E402
from detectors.default_checks import default_checks  # noqa: E402
from streams.sensor_engine import SensorEngine  # noqa: E402

__all__ = ["SIGNALS", "signal", "worker_bytes", "json_bytes", "main"]

SIGNALS = ("noise", "walk", "nab", "periodic", "spikes", "levels", "variety", "period_noise")
#: the numeric fields of each kind's readings
_FIELDS = {"water_level": ("level_m",), "traffic": ("speed_kmh", "flow_vph", "occupancy_pct"),
           "weather": ("rain_mm", "temp_c", "wind_ms", "gust_ms")}
_START = 1_800_000_000.0


def nab_values(root: str | os.PathLike) -> Iterator[float]:
    """The values of every NAB data file under ``root``, file after file (sorted), for ever."""
    files = sorted(Path(root, "data").rglob("*.csv"))
    if not files:
        raise FileNotFoundError(f"no NAB data files under {root}")
    while True:
        for path in files:
            with open(path, newline="") as fh:
                for row in csv.DictReader(fh):
                    yield float(row["value"])


def signal(kind: str, n: int, seed: int = 0) -> Iterator[float]:
    """``n`` readings of signal ``kind`` (one of :data:`SIGNALS`)."""
    rng = random.Random(seed)
    if kind == "nab":
        source = nab_values(os.environ["CITYEYE_NAB_DATA"])
        for _ in range(n):
            yield next(source)
        return
    level = 0.0
    for t in range(n):
        if kind == "noise":
            yield rng.gauss(0, 1)
        elif kind == "walk":
            level += rng.gauss(0, 1)
            yield level
        elif kind == "periodic":
            yield 50 + 20 * math.sin(2 * math.pi * t / 288) + rng.gauss(0, 2)
        elif kind == "spikes":  # Student-t with one degree of freedom (Cauchy)
            yield rng.gauss(0, 1) / (abs(rng.gauss(0, 1)) + 1e-12)
        elif kind == "levels":  # a level never seen before every 50 readings
            if t % 50 == 0:
                level = (t // 50) * 10.0 * (1 if (t // 50) % 2 else -1) + rng.random()
            yield level + rng.gauss(0, 0.5)
        elif kind == "period_noise":
            yield 50 + 20 * math.sin(2 * math.pi * t / 96) + rng.gauss(0, 1) if t < 2400 else rng.gauss(50, 20)
        elif kind == "variety":
            yield rng.choice((-1, 1)) * rng.random() * 10 ** rng.randint(0, 6)
        else:
            raise ValueError(f"unknown signal {kind!r}")


def json_bytes(state) -> int:
    """``len(json.dumps(state))``, default separators."""
    return len(json.dumps(state))


def worker_bytes(snapshot: dict) -> int:
    """Bytes of a sensor snapshot as the worker's snapshot table stores it (compact JSON with topic / partition)."""
    return len(json.dumps({**snapshot, "topic": "readings-x", "partition": 0}, separators=(",", ":")))


class Largest:
    """The largest size seen and the reading it was at."""

    def __init__(self) -> None:
        self.size, self.at = 0, -1

    def see(self, size: int, at: int) -> None:
        if size > self.size:
            self.size, self.at = size, at

    def __str__(self) -> str:
        return f"{self.size:6d} @ {self.at:6d}"


def sample(n: int, every: int, feed: Callable[[int, float], None], sizes: Callable[[], dict[str, int]],
           values: Iterator[float]) -> dict[str, Largest]:
    """Feed ``values`` one by one; every ``every`` readings (and after the last) record ``sizes()``."""
    out: dict[str, Largest] = {}
    k = -1
    for k, v in enumerate(values):
        feed(k, v)
        if (k + 1) % every == 0 or k + 1 == n:
            for name, size in sizes().items():
                out.setdefault(name, Largest()).see(size, k + 1)
    return out


def run_model(kind: str, n: int, every: int) -> dict[str, Largest]:
    det = make_detector(DEFAULT_DETECTOR)

    def feed(_k: int, v: float) -> None:
        det.score_learn_one({"value": v})

    return sample(n, every, feed, lambda: {"model json": json_bytes(det.snapshot())}, signal(kind, n))


def run_check(kind: str, n: int, every: int) -> dict[str, Largest]:
    check = next(c for c in default_checks("traffic") if c.name == "traffic.speed_anomaly")

    def feed(k: int, v: float) -> None:
        check.process({"speed_kmh": v}, _START + 60.0 * k)

    return sample(n, every, feed, lambda: {"check json": json_bytes(check.snapshot())}, signal(kind, n))


def run_sensor(sensor_kind: str, kind: str, n: int, every: int) -> dict[str, Largest]:
    levels = {"warning_m": 4.5, "guaranteed_m": 5.2, "historical_max_m": 5.86} if sensor_kind == "water_level" else {}
    sensor = Sensor(id="s-1", kind=sensor_kind, district="d", lat=31.2, lon=121.5, interval_s=60, levels=levels)
    engine = SensorEngine(SensorRegistry({"s-1": sensor}))
    fields = _FIELDS[sensor_kind]

    def feed(k: int, v: float) -> None:
        t = _START + 60.0 * k
        engine.process(Reading("s-1", sensor_kind, "d", t, dict.fromkeys(fields, v), t, "x"), position=k)

    def sizes() -> dict[str, int]:
        snap = engine.snapshot("s-1")
        return {f"{sensor_kind} worker": worker_bytes(snap), f"{sensor_kind} json": json_bytes(snap)}

    return sample(n, every, feed, sizes, signal(kind, n))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=100_000, help="readings per signal")
    parser.add_argument("--every", type=int, default=1000, help="readings between two samples")
    parser.add_argument("--signals", default=",".join(SIGNALS), help="comma-separated, of " + ", ".join(SIGNALS))
    parser.add_argument("--kinds", default="water_level,traffic,weather", help="whole sensors of these kinds")
    args = parser.parse_args(argv)
    worst: dict[str, tuple[int, str, int]] = {}
    for kind in args.signals.split(","):
        if kind == "nab" and not os.environ.get("CITYEYE_NAB_DATA"):
            print("nab: skipped (CITYEYE_NAB_DATA not set)")
            continue
        t0 = time.perf_counter()
        found = {**run_model(kind, args.n, args.every), **run_check(kind, args.n, args.every)}
        for sensor_kind in filter(None, args.kinds.split(",")):
            found.update(run_sensor(sensor_kind, kind, args.n, args.every))
        print(f"{kind:9s} " + "  ".join(f"{name}: {largest}" for name, largest in found.items())
              + f"  ({time.perf_counter() - t0:.0f} s)", flush=True)
        for name, largest in found.items():
            if largest.size > worst.get(name, (0,))[0]:
                worst[name] = (largest.size, kind, largest.at)
    print("largest of all signals (bytes, signal @ reading):")
    for name, (size, kind, at) in worst.items():
        print(f"  {name:18s} {size:6d}  {kind} @ {at}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
