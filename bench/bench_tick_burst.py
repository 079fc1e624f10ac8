"""The flatline burst and a tick's burst inside one worker, without a broker: CPU, wall time, longest lock hold.

``bench/bench_latency.py`` measures the burst end to end, through gateways,
Tansu and a loaded machine: too noisy to tell a few tens of milliseconds
apart. This bench builds a :class:`streams.agents.DetectorRuntime` with
``--sensors`` gauges (the latency bench's: 5 readings/s, levels),
a producer that acknowledges at once and a snapshot table in memory (a
stale limit of 5 min, not 1 s: the time taken to feed them must not count), and
times, in the worker's own code:

``burst batch``
    the batch holding every gauge's 60th reading: the ``--constant`` constant
    gauges' flatline rule fires for all of them (the ~950 events of
    ``bench_latency.py``), their events are sent and their snapshots marked;
``burst snapshots``
    the background writer building and sending those snapshots;
``quiet tick``
    a clock tick over every sensor that emits nothing (once a second);
``stale tick``
    a tick after 400 s of silence: every gauge's stale rule fires at once.

(a tick's figures include writing the snapshots it made necessary.)

For each: wall and CPU time, events, and the longest time the runtime's lock
was held in one go (what a batch of readings may have to wait), in wall and in
CPU time. Run with no
``--code`` it runs each code root of ``--roots`` (default: the integration
worktree, then this checkout) in a subprocess, ``--rounds`` times interleaved,
and prints the medians and ranges side by side.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path
from types import SimpleNamespace
from typing import Any

from faust.types import TP

from cityeye.contracts import Reading
from cityeye.reading_records import encode_reading
from cityeye.sensor_registry import Sensor, SensorRegistry
from streams.agents import DetectorRuntime
from streams.alert_sender import AlertSender
from streams.clocks import SensorClocks
from streams.gc_tuning import tune_gc
from streams.sensor_engine import SensorEngine

__all__ = ["TimedLock", "NullProducer", "MemoryTable", "burst_runtime", "reading_events", "FLATLINE_REPEATS"]

#: equal readings that make a flatline (the built-in water-level rule)
FLATLINE_REPEATS = 60
#: the gauges' reading interval (bench/paced_publishers.py: 1,000 gauges at 5 k readings/s)
INTERVAL_S = 0.2
#: the registry's interval: stale after 5 min of silence, so a slow machine's wall time never makes them stale
REGISTRY_INTERVAL_S = 60.0
T0 = 1.8e9


class TimedLock(asyncio.Lock):
    """An :class:`asyncio.Lock` that notes how long it was held each time, in wall and in CPU time (the CPU
    time does not count the moments a loaded machine took the process off its core)."""

    def __init__(self) -> None:
        super().__init__()
        self.holds: list[float] = []
        self.cpu_holds: list[float] = []
        self._since = self._cpu_since = 0.0

    async def acquire(self) -> bool:
        await super().acquire()
        self._since, self._cpu_since = time.perf_counter(), time.process_time()
        return True

    def release(self) -> None:
        self.holds.append(time.perf_counter() - self._since)
        self.cpu_holds.append(time.process_time() - self._cpu_since)
        super().release()


class NullProducer:
    """A producer whose sends the broker acknowledges at once (the sender's own CPU only); keeps the values."""

    def __init__(self) -> None:
        self.values: list[bytes] = []

    async def send(self, topic: str, key: bytes, value: bytes) -> asyncio.Future:
        self.values.append(value)
        done = asyncio.get_running_loop().create_future()
        done.set_result(None)
        return done


class MemoryTable:
    """A snapshot table in memory whose sends are acknowledged at once (they are serialised, as the changelog's)."""

    def __init__(self) -> None:
        self.kept: dict[str, dict[str, Any]] = {}
        self.bytes = 0

    def keep(self, tp: TP, sensor_id: str, snapshot: dict[str, Any]) -> dict[str, Any]:
        value = self.kept[sensor_id] = {**snapshot, "topic": tp.topic, "partition": tp.partition}
        return value

    def get(self, sensor_id: str) -> None:
        return None  # a fresh worker: nothing to restore

    async def send(self, sensor_id: str, value: dict[str, Any]) -> asyncio.Future:
        self.bytes += len(json.dumps(value))
        done = asyncio.get_running_loop().create_future()
        done.set_result(None)
        return done


def _gauges(sensors: int) -> list[str]:
    return [f"wl-{i:04d}" for i in range(sensors)]


def burst_runtime(sensors: int, partitions: int = 4) -> tuple[DetectorRuntime, TimedLock, list[float]]:
    """A runtime for ``sensors`` gauges with a :class:`TimedLock`, no broker, and how far (s) its sensors' clocks
    run ahead of the wall clock (a list to set: a tick after a silence)."""
    registry = SensorRegistry(sensors={sid: Sensor(
        id=sid, kind="water_level", district=f"d{i % 10:02d}", lat=31.2, lon=121.5, interval_s=REGISTRY_INTERVAL_S,
        levels={"warning_m": 4.5, "guaranteed_m": 5.2}) for i, sid in enumerate(_gauges(sensors))})
    alerts = AlertSender(None)  # type: ignore[arg-type]  # never starts a producer: NullProducer below
    alerts._producer = NullProducer()  # type: ignore[assignment]
    app = SimpleNamespace(consumer=SimpleNamespace(highwater=lambda tp: None))
    runtime = DetectorRuntime(app, SensorEngine(registry), None, MemoryTable(), snapshot_every=10_000,  # type: ignore
                              alerts=alerts)
    lock = TimedLock()
    runtime._lock = runtime.writer.lock = lock
    shift = [0.0]  # the batches note readings at time.monotonic(): the clocks' time runs ahead of it by shift
    runtime.clocks = SensorClocks(lambda: time.monotonic() + shift[0])
    runtime.partitions = [TP("readings.water_level", p) for p in range(partitions)]  # type: ignore[attr-defined]
    return runtime, lock, shift


def reading_events(runtime: DetectorRuntime, sensors: int, round_: int, constant: int, offsets: dict[TP, int]) -> list:
    """Faust-like events of one reading per gauge, round ``round_``: the first ``constant`` gauges read 3.0,
    the others a value that changes every reading."""
    events = []
    for i, sid in enumerate(_gauges(sensors)):
        tp = runtime.partitions[i % len(runtime.partitions)]  # type: ignore[attr-defined]
        value = 3.0 if i < constant else 3.0 + 0.01 * (round_ % 7)
        reading = Reading(sensor_id=sid, kind="water_level", district=f"d{i % 10:02d}", ts=T0 + round_ * INTERVAL_S,
                          values={"level_m": value}, received_at=T0 + round_ * INTERVAL_S, mqtt_topic="")
        offset = offsets[tp] = offsets.get(tp, -1) + 1
        events.append(SimpleNamespace(message=SimpleNamespace(tp=tp, offset=offset, key=sid.encode(),
                                                              value=encode_reading(reading), headers=None)))
    return events


async def _timed(lock: TimedLock, work) -> dict[str, float]:
    lock.holds.clear()
    lock.cpu_holds.clear()
    wall, cpu = time.perf_counter(), time.process_time()
    await work
    return {"wall_ms": 1e3 * (time.perf_counter() - wall), "cpu_ms": 1e3 * (time.process_time() - cpu),
            "longest_lock_ms": 1e3 * max(lock.holds, default=0.0),
            "longest_lock_cpu_ms": 1e3 * max(lock.cpu_holds, default=0.0), "lock_turns": len(lock.holds)}


async def _drained(runtime: DetectorRuntime) -> None:
    writer = runtime.writer
    while writer.pending or writer.in_flight:
        await asyncio.sleep(0)


async def _tick_drained(runtime: DetectorRuntime) -> None:
    """A tick and the snapshots it made necessary (the writer may run between a tick's chunks)."""
    await runtime.tick()
    await _drained(runtime)


async def measure(sensors: int, constant: int) -> dict[str, dict[str, float]]:
    """The four phases of the module docstring, on the code importable here."""
    runtime, lock, shift = burst_runtime(sensors)
    offsets: dict[TP, int] = {}
    for round_ in range(FLATLINE_REPEATS - 1):
        await runtime.process_events(reading_events(runtime, sensors, round_, constant, offsets))
    await _drained(runtime)
    sent = runtime.events_sent
    out: dict[str, dict[str, float]] = {}
    burst = reading_events(runtime, sensors, FLATLINE_REPEATS - 1, constant, offsets)
    out["burst batch"] = await _timed(lock, runtime.process_events(burst))
    out["burst batch"]["events"] = runtime.events_sent - sent
    out["burst snapshots"] = await _timed(lock, _drained(runtime))
    for name, advance in (("quiet tick", 0.5), ("stale tick", 400.0)):
        sent = runtime.events_sent
        shift[0] += advance
        out[name] = await _timed(lock, _tick_drained(runtime))
        out[name]["events"] = runtime.events_sent - sent
    return out


def _compare(roots: list[str], rounds: int, sensors: int, constant: int) -> None:
    results: dict[str, list[dict[str, dict[str, float]]]] = {root: [] for root in roots}
    for r in range(rounds):
        for root in roots if r % 2 == 0 else roots[::-1]:
            load = os.getloadavg()[0]
            proc = subprocess.run([sys.executable, __file__, "--code", "--sensors", str(sensors), "--constant",
                                   str(constant)], env={**os.environ, "PYTHONPATH": root},
                                  capture_output=True, text=True, check=True)
            results[root].append(json.loads(proc.stdout.strip().splitlines()[-1]))
            print(f"round {r + 1} {root}: load {load:.2f}", flush=True)
    for phase in results[roots[0]][0]:
        print(f"\n{phase}:")
        for key in results[roots[0]][0][phase]:
            cells = []
            for root in roots:
                values = [run[phase][key] for run in results[root]]
                cells.append(f"{statistics.median(values):9.1f} ({min(values):.1f}-{max(values):.1f})")
            print(f"  {key:16s} " + "   ".join(cells))
    print("\ncolumns: " + "   ".join(roots))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sensors", type=int, default=1000)
    parser.add_argument("--constant", type=int, default=950, help="gauges that read a constant value")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--roots", nargs="+", default=["/work/wt/integration", str(Path(__file__).resolve().parents[1])])
    parser.add_argument("--code", action="store_true", help="measure the code on PYTHONPATH once, print JSON")
    args = parser.parse_args()
    if args.code:
        # a worker's INFO log, written where it costs its formatting and the handler only
        logging.basicConfig(level=logging.INFO, stream=open(os.devnull, "w"), format="%(asctime)s %(name)s %(message)s")
        tune_gc()  # as a worker process does at its start (a full collection otherwise lands in some lock turn)
        print(json.dumps(asyncio.run(measure(args.sensors, args.constant))))
    else:
        _compare(args.roots, args.rounds, args.sensors, args.constant)


if __name__ == "__main__":
    main()
