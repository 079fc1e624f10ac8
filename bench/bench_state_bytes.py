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

``--worst`` prints instead the default detector's state at its largest
information content, built rather than streamed (the arithmetic bound of
docs/anomaly.md section 2): every context set at its largest fill (a full
previous generation and a current one a slot short of full) with its slots
drawn at random (the seasonal sets within their key space), every float
buffer and warm-up value a random float32 bit pattern (incompressible), the
shape reservoirs' rows z-normalised Gaussian windows (the most entropy their
unit variance allows), every scalar a random float; after the seasonal
warm-up and, separately, just before its end (warm-up values instead of
seasonal sets). Every view's last context symbols are at their longest.

Signals: ``noise`` (white, unrounded), ``walk`` (random walk), ``nab`` (NAB's
files one after another, ``CITYEYE_NAB_DATA``; skipped without it),
``periodic`` (a daily cycle of 288 readings plus noise), ``spikes``
(heavy-tailed: Student-t with one degree of freedom), ``levels`` (a new
level every 50 readings, never seen before, plus noise) and ``variety``
(values over six orders of magnitude, either sign); ``period_noise`` is the
adversarial one: a daily cycle of 96 readings for 2 400 readings (the seasonal
view finds its period and keeps seasonal context sets), then noise, which fills
every context set. ``uniform`` (uniform on [0, 1] for the model and the check)
gives a whole sensor every field at once, each on its own, unrounded and
uniform within the field's physical range (``cityeye/kinds.yaml``): the rule
windows fill with values of 17 digits. ``--kinds all``: every declared kind.

    .venv/bin/python bench/bench_state_bytes.py [--n 100000] [--every 1000] [--signals noise,walk] [--worst]
"""

from __future__ import annotations

import argparse
import csv
from array import array
import json
import math
import os
import random
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import numpy as np  # noqa: E402

from cityeye.contracts import Reading  # noqa: E402
from cityeye.kinds import kind_names, kind_spec  # noqa: E402
from cityeye.sensor_registry import Sensor, SensorRegistry  # noqa: E402
from detectors._bounded_keys import BoundedKeySet  # noqa: E402
from detectors._shape import _Q, ShapeNovelty  # noqa: E402
from detectors.catalog import DEFAULT_DETECTOR, make_detector  # noqa: E402
from detectors.default_checks import default_checks  # noqa: E402
from streams.sensor_engine import SensorEngine  # noqa: E402

__all__ = ["SIGNALS", "signal", "sensor_values", "worker_bytes", "json_bytes", "largest_state", "main"]

SIGNALS = ("noise", "walk", "nab", "periodic", "spikes", "levels", "variety", "period_noise", "uniform")
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
        elif kind == "uniform":
            yield rng.random()
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


def sensor_values(sensor_kind: str, kind: str, seed: int = 0) -> Callable[[float], dict[str, float]]:
    """The fields of a reading of a ``sensor_kind`` sensor given signal ``kind``'s value: that value in
    every field, or (``uniform``) each field on its own, uniform within its physical range."""
    specs = kind_spec(sensor_kind).fields
    if kind != "uniform":
        return lambda v: dict.fromkeys(specs, v)
    rng = random.Random(seed + 1)
    return lambda _v: {name: f.low + (f.high - f.low) * rng.random() for name, f in specs.items()}


def run_sensor(sensor_kind: str, kind: str, n: int, every: int) -> dict[str, Largest]:
    levels = {"warning_m": 4.5, "guaranteed_m": 5.2, "historical_max_m": 5.86} if sensor_kind == "water_level" else {}
    sensor = Sensor(id="s-1", kind=sensor_kind, district="d", lat=31.2, lon=121.5, interval_s=60, levels=levels)
    engine = SensorEngine(SensorRegistry({"s-1": sensor}))
    values = sensor_values(sensor_kind, kind)

    def feed(k: int, v: float) -> None:
        t = _START + 60.0 * k
        engine.process(Reading("s-1", sensor_kind, "d", t, values(v), t, "x"), position=k)

    def sizes() -> dict[str, int]:
        snap = engine.snapshot("s-1")
        return {f"{sensor_kind} worker": worker_bytes(snap), f"{sensor_kind} json": json_bytes(snap)}

    return sample(n, every, feed, sizes, signal(kind, n))


def _random_floats(rng: np.random.Generator, n: int) -> np.ndarray:
    """``n`` random finite float32 bit patterns (exponent's top bit clear: no inf / NaN)."""
    return (rng.integers(0, 2**32, size=n, dtype=np.uint64).astype(np.uint32) & np.uint32(0xBFFFFFFF)).view(np.float32)


def _fill_keys(keys: BoundedKeySet, rng: np.random.Generator, space: int) -> None:
    """A full previous generation and a current one a slot short of full, slots at random among ``space``."""
    slots = rng.permutation(min(keys.slots, space))
    previous = min(keys._cap + 17, len(slots) // 2)
    current = min(keys._cap - 1, len(slots) - previous)
    gen = bytearray(keys.slots)
    for s in slots[:previous]:
        gen[s] = 4
    for s in slots[previous:previous + current]:
        gen[s] = 5
    keys._set_generations(gen)
    keys._start_generation(5)
    keys._fill = current


def _fill_shape(shape: ShapeNovelty, rng: np.random.Generator) -> None:
    """A full buffer (a reading short of a shift) of random floats, a reservoir of Gaussian windows."""
    n = len(shape._buf) - 1
    shape._buf[:n], shape._end, shape._pending = _random_floats(rng, n), n, []
    z = rng.standard_normal((shape.reservoir, shape.window))
    z = (z - z.mean(axis=1, keepdims=True)) / z.std(axis=1, keepdims=True)
    shape._res = np.clip(np.rint(z * _Q), -127, 127).astype(np.int8)
    shape._record, shape._score = float(rng.random()), float(rng.random())
    shape._offered, shape._rng, shape._n, shape._computed = 10**9, 2**63 + 12345, 10**9, 10**8


def largest_state(warmup: bool, seed: int = 0) -> dict:
    """The default detector's snapshot at its largest information content (see ``--worst``)."""
    rng = np.random.default_rng(seed)
    det = make_detector(DEFAULT_DETECTOR)
    for view in det._views:
        _fill_keys(view._contexts.seen, rng, view._contexts.seen.slots)
        # every resolution's last symbols, at their longest (order symbols in [-2, levels])
        symbols = [rng.integers(-2, levels + 1, size=order).tolist() for levels, order in view.resolutions]
        view._contexts.restore(symbols, view._contexts.seen_state())
        view._min, view._max, view._mean, view._var, view._base, view._score = map(float, rng.standard_normal(6))
        if view._chunk_len:
            view._chunks = [list(map(float, rng.standard_normal(2))) for _ in range(view.range_chunks)]
            view._open = [float(rng.standard_normal()), float(rng.standard_normal()), view._chunk_len - 1]
        if view.season_warmup and warmup:  # a value short of the period estimate
            view._s_buf, view._period = array("f", _random_floats(rng, view.season_warmup - 1).tolist()), 0
        elif view.season_warmup:  # the longest period the warm-up can find, every seasonal set full
            view._s_buf, view._period = None, view.season_warmup // 2 - 1
            view._s_hist = [rng.integers(-1, levels + 1, size=2 * view._period + 2).tolist()
                            for levels, _ in view.season_resolutions]
            for keys, (levels, order) in zip(view._s_seen, view.season_resolutions):
                _fill_keys(keys, rng, (levels + 3) ** (order + 1))  # the seasonal keys' whole space
            view._s_base, view._s_count = float(rng.random()), 10**9
    _fill_shape(det._shape, rng)
    _fill_shape(det._long._shape, rng)
    det._long._sum, det._long._count, det._long.blocks_learnt = float(rng.standard_normal()), 7, 10**9
    det._sums = [float(x) for x in rng.standard_normal(len(det._sums))]
    det._alarms, det._score = float(rng.random()), float(rng.random())
    det._flat._last, det._flat._run, det._flat._record = float(rng.standard_normal()), 10**6, 10**6
    return det.snapshot()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=100_000, help="readings per signal")
    parser.add_argument("--every", type=int, default=1000, help="readings between two samples")
    parser.add_argument("--signals", default=",".join(SIGNALS), help="comma-separated, of " + ", ".join(SIGNALS))
    parser.add_argument("--kinds", default="water_level,traffic,weather",
                        help="whole sensors of these kinds (all: every one)")
    parser.add_argument("--worst", action="store_true", help="the state at its largest information content")
    args = parser.parse_args(argv)
    if args.worst:
        for warmup in (False, True):
            state = largest_state(warmup)
            print(f"default detector, {'in' if warmup else 'after'} the seasonal warm-up: json {json_bytes(state)},"
                  f" compact {len(json.dumps(state, separators=(',', ':')))} bytes")
        return 0
    worst: dict[str, tuple[int, str, int]] = {}
    for kind in args.signals.split(","):
        if kind == "nab" and not os.environ.get("CITYEYE_NAB_DATA"):
            print("nab: skipped (CITYEYE_NAB_DATA not set)")
            continue
        t0 = time.perf_counter()
        found = {**run_model(kind, args.n, args.every), **run_check(kind, args.n, args.every)}
        for sensor_kind in kind_names() if args.kinds == "all" else filter(None, args.kinds.split(",")):
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
