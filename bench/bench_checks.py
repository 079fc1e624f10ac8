"""Cost of each kind's default rule checks per reading, state per sensor, memory of 100 k sensors.

Prints, for every built-in kind, microseconds per reading of its default
checks (``detectors.default_checks.default_checks``) and of the whole
per-sensor engine (checks, transitions, bookkeeping), beside two baselines
measured in the same run: a bare loop over the same readings (reading the
field, no check) and, for water level, the same checks with the forecast's
previous fit (a Theil-Sen refit over the window at every reading, kept here
as the baseline). Times are this process's CPU time (the machine is shared),
the best of three runs. Then the JSON snapshot bytes per sensor after the run.

``--sensors N`` adds the memory of N simulated sensors in one engine (one
worker), N / 3 of each kind: one sensor per kind is run through
``--readings`` readings, and its snapshot is restored under N / 3 sensor ids
of that kind, so every sensor holds full windows; printed per kind are the
process's RSS growth per sensor (over the registry's own) and the snapshot
bytes per sensor. Figures only:
nothing here asserts timings.

    .venv/bin/python bench/bench_checks.py [--readings 3000] [--sensors 100000]
"""

from __future__ import annotations

import argparse
import gc
import json
import sys
import time
import tracemalloc
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.bench_streams import KINDS, make_readings, make_registry  # noqa: E402
from cityeye.sensor_registry import SensorRegistry  # noqa: E402
from detectors._line_fit import LineEstimate  # noqa: E402
from detectors.base import finite_value  # noqa: E402
from detectors.forecast import LevelForecast  # noqa: E402
from streams.sensor_engine import SensorEngine  # noqa: E402

__all__ = ["TheilSenRefitForecast", "main"]

#: the field a bare loop reads per kind
_FIELD = {"water_level": "level_m", "weather": "rain_mm", "traffic": "speed_kmh"}


class TheilSenRefitForecast(LevelForecast):
    """The forecast with its previous fit: Theil-Sen (median of pairwise slopes) refitted at every reading."""

    def update(self, x: dict[str, float], t: float):
        v = finite_value(x, self.field)
        if v is not None and not (self._recent and t <= self._recent[-2]):
            self._estimate(t)  # the previous forecast refitted at every reading, whatever the trend
        return super().update(x, t)

    def _estimate(self, t: float, line: tuple[float, float] | None = None) -> LineEstimate | None:
        """The Theil-Sen line at ``t``; ``line`` (the running fit's, which the base passes) is ignored."""
        pts = self._fit.points()
        n = len(pts)
        min_span = self.window_s / 2 if self.min_span_s is None else self.min_span_s
        if n < self.min_points or pts[-1][0] - pts[0][0] < max(min_span, 1e-9):
            return None
        arr = np.asarray(pts, dtype=float)
        tc, y = arr[:, 0] - t, arr[:, 1]
        i, j = np.triu_indices(n, k=1)
        dt = tc[j] - tc[i]
        ok = dt != 0
        slope = float(np.median((y[j] - y[i])[ok] / dt[ok]))
        value = float(np.median(y - slope * tc))
        resid = y - (value + slope * tc)
        sigma = 1.4826 * float(np.median(np.abs(resid - np.median(resid))))
        tm = float(tc.mean())
        sxx = float(((tc - tm) ** 2).sum())
        return LineEstimate(n, pts[-1][0] - pts[0][0], slope, value, sigma, sxx, tm)


def _refit_factory(sensor):
    """The default checks with the forecast swapped for :class:`TheilSenRefitForecast`."""
    from streams.sensor_engine import default_checks_factory

    checks = default_checks_factory(sensor)
    for c in checks:
        if type(c) is LevelForecast:
            c.__class__ = TheilSenRefitForecast  # same state, the old fit
    return checks


def _per_kind(readings, kind):
    return [r for r in readings if r.kind == kind]


def _time_checks(engine: SensorEngine, readings) -> float:
    """Microseconds per reading of the sensors' checks alone (``check.process``)."""
    for r in readings[:1]:
        engine.process(r)
    states = {r.sensor_id: engine.state(r.sensor_id) for r in readings}
    for r in readings:  # every sensor known before timing
        if states[r.sensor_id] is None:
            engine.process(r)
            states[r.sensor_id] = engine.state(r.sensor_id)
    t0 = time.process_time()
    for r in readings:
        x, t = r.values, r.ts
        for c in states[r.sensor_id].checks:
            c.process(x, t)
    return 1e6 * (time.process_time() - t0) / len(readings)


def _time_engine(engine: SensorEngine, readings) -> float:
    t0 = time.process_time()
    for r in readings:
        engine.process(r)
    return 1e6 * (time.process_time() - t0) / len(readings)


def _time_bare(readings, field: str) -> float:
    t0 = time.process_time()
    for r in readings:
        finite_value(r.values, field)
    return 1e6 * (time.process_time() - t0) / len(readings)


def _rss_bytes() -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    raise RuntimeError("no VmRSS in /proc/self/status")


def cost_table(sensors_per_kind: int, readings_per_sensor: int, repeats: int = 3) -> dict[str, dict]:
    """Per kind: µs/reading (checks, engine, bare loop, refit baseline; CPU time of this process, the best of
    ``repeats`` runs on fresh engines) and snapshot bytes per sensor."""
    registry = make_registry(sensors_per_kind * len(KINDS))
    readings = make_readings(registry, readings_per_sensor * len(registry))
    out: dict[str, dict] = {}
    for _ in range(repeats):
        for kind in KINDS:
            rs = _per_kind(readings, kind)
            row = {"checks_us": _time_checks(SensorEngine(registry), rs)}
            engine = SensorEngine(registry)
            row["engine_us"] = _time_engine(engine, rs)
            row["bare_us"] = _time_bare(rs, _FIELD[kind])
            if kind == "water_level":
                row["refit_us"] = _time_checks(SensorEngine(registry, checks_factory=_refit_factory), rs)
            row["state_bytes"] = max(len(json.dumps(engine.snapshot(sid))) for sid in {r.sensor_id for r in rs})
            best = out.setdefault(kind, row)
            for k, v in row.items():
                best[k] = min(best[k], v)
    return out


def memory_of(kind: str, n_sensors: int, readings_per_sensor: int) -> dict[str, float]:
    """RSS growth and snapshot bytes per sensor for ``n_sensors`` sensors of ``kind`` with full windows in one engine."""
    registry = SensorRegistry({s.id: s for s in make_registry(n_sensors * len(KINDS)) if s.kind == kind}, source="<bench>")
    warm = make_registry(len(KINDS))
    engine = SensorEngine(warm)
    for r in make_readings(warm, readings_per_sensor * len(KINDS)):
        engine.process(r)
    template = next(engine.snapshot(sid) for sid in engine.sensor_ids() if engine.state(sid).sensor.kind == kind)
    gc.collect()
    big = SensorEngine(registry)
    before = _rss_bytes()
    tracemalloc.start()
    for s in registry:
        if not big.restore(dict(template, sensor_id=s.id, district=s.district)):
            raise RuntimeError(f"restore of {s.id} failed")
    gc.collect()
    traced = tracemalloc.get_traced_memory()[0]
    tracemalloc.stop()
    grown = _rss_bytes() - before
    sample = big.sensor_ids()[:: max(1, n_sensors // 200)]
    json_bytes = sum(len(json.dumps(big.snapshot(sid))) for sid in sample) / len(sample)
    return {"rss_per_sensor": grown / n_sensors, "heap_per_sensor": traced / n_sensors, "json_per_sensor": json_bytes}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sensors-per-kind", type=int, default=10, help="sensors per kind in the cost table")
    ap.add_argument("--readings", type=int, default=3000, help="readings per sensor (1 a minute; 3000 ≈ 2 days)")
    ap.add_argument("--sensors", type=int, default=0, help="also measure memory of this many sensors (e.g. 100000)")
    ap.add_argument("--big-sample", type=int, default=2000,
                    help="a kind over 16 KiB a sensor is measured on this many sensors and scaled (RAM is shared)")
    args = ap.parse_args(argv)
    with open("/proc/loadavg") as f:
        load = " ".join(f.read().split()[:3])
    print(f"load average {load}; {args.sensors_per_kind} sensors per kind, {args.readings} readings each")
    table = cost_table(args.sensors_per_kind, args.readings)
    print(f"{'kind':14s}{'checks us/rd':>14s}{'engine us/rd':>14s}{'bare loop':>11s}"
          f"{'Theil-Sen refit (baseline)':>28s}{'state bytes':>13s}")
    for kind, row in table.items():
        refit = f"{row['refit_us']:.1f}" if "refit_us" in row else "-"
        print(f"{kind:14s}{row['checks_us']:14.1f}{row['engine_us']:14.1f}{row['bare_us']:11.2f}"
              f"{refit:>28s}{row['state_bytes']:13d}")
    if args.sensors:
        per_kind = max(1, args.sensors // len(KINDS))
        print(f"memory: {args.sensors} sensors in one engine, {per_kind} of each kind, every one with full windows "
              f"(heap: Python allocations traced while restoring; kinds over 16 KiB measured on at most "
              f"{args.big_sample} sensors and scaled, marked *)")
        print(f"{'kind':14s}{'heap KiB/sensor':>17s}{'RSS KiB/sensor':>16s}{'JSON KiB/sensor':>17s}{'heap MiB':>10s}")
        total = 0.0
        for kind in KINDS:
            n, mark = per_kind, ""
            probe = memory_of(kind, 50, args.readings)
            if probe["heap_per_sensor"] > 16 * 1024 and per_kind > args.big_sample:
                n, mark = args.big_sample, "*"
            m = memory_of(kind, n, args.readings)
            total += m["heap_per_sensor"] * per_kind
            print(f"{kind + mark:14s}{m['heap_per_sensor'] / 1024:17.1f}{m['rss_per_sensor'] / 1024:16.1f}"
                  f"{m['json_per_sensor'] / 1024:17.1f}{m['heap_per_sensor'] * per_kind / 2**20:10.0f}")
        print(f"{'all':14s}{total / (per_kind * len(KINDS)) / 1024:17.1f}{'':33s}{total / 2**20:10.0f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
