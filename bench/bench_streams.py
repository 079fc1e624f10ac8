"""Throughput of the Faust detector worker beside a raw aiokafka consumer.

Starts its own Tansu broker (launch.servers), writes a backlog of
realistic readings from N sensors (water levels with a tide and a flood
wave, rain showers, traffic speeds with congestion dips) to the readings
topics (as the gateway writes them: aggregated records of up to
``--aggregate`` readings per partition, cityeye/reading_records.py; 1: one
record per reading, the format before aggregation), then reads the same
backlog three ways, in the same run:

1. a raw aiokafka consumer: ``getmany`` + the shared decoder
   (``cityeye.reading_records.readings_of``) of each record (the limit of a
   Python consumer on this machine and broker);
2. the Faust worker with no checks (Faust, decoding, engine bookkeeping,
   snapshots: the framework's share);
3. the Faust worker with the real detectors (``detectors.default_checks.default_checks``).

and prints readings/s for each and the ratios, then whether the alert events
on ``alerts.events`` are exactly those the pure engine computes from the same
readings. No assertions: figures only.

    .venv/bin/python bench/bench_streams.py --sensors 300 --readings 60000
    .venv/bin/python bench/bench_streams.py --quick          # 20 k readings
    .venv/bin/python bench/bench_streams.py --aggregate 1    # single records (the issue's baseline)
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import math
import random
import time
import uuid
from typing import Iterator

import orjson

from cityeye.config import InfluxSettings, KafkaSettings, Settings
from cityeye.contracts import TOPIC_ALERTS, AlertEvent, Reading, all_topics, readings_topic, to_json
from cityeye.kafka import ensure_topics, make_consumer, make_producer
from cityeye.reading_records import readings_of
from cityeye.sensor_registry import Sensor, SensorRegistry
from detectors.default_checks import builtin_rulebook
from ingest.aggregation import OutRecord, build_records
from launch.servers import TansuServer
from streams.command import StreamsWorker
from streams.grouping import by_sensor
from streams.sensor_engine import SensorEngine, default_checks_factory

__all__ = ["make_registry", "make_readings", "main"]

#: the kinds the benchmark's sensors take in turn (the built-in ones, whatever else is declared)
KINDS = ("water_level", "traffic", "weather")


def make_registry(n: int) -> SensorRegistry:
    """``n`` sensors, kinds in turn; water-level sensors get flood levels."""
    reg = SensorRegistry(source="<bench>")
    for i in range(n):
        kind = KINDS[i % len(KINDS)]
        levels = {"warning_m": 4.5, "guaranteed_m": 5.2, "historical_max_m": 5.86} if kind == "water_level" else {}
        sid = f"{kind[:2]}-bench-{i:05d}"
        reg.sensors[sid] = Sensor(id=sid, kind=kind, district=f"d{i % 16}", lat=31.2, lon=121.5, interval_s=60,
                                  levels=levels)
    return reg


def _values(kind: str, i: int, k: int, rng: random.Random) -> dict[str, float]:
    """Reading ``k`` of sensor ``i``: one minute apart."""
    if kind == "water_level":
        tide = 0.6 * math.sin(2 * math.pi * k / 745.0 + i)
        wave = 1.4 * math.exp(-(((k % 1440) - 700) / 120.0) ** 2) if i % 5 == 0 else 0.0
        return {"level_m": round(3.3 + tide + wave + rng.gauss(0, 0.01), 3)}
    if kind == "weather":
        shower = (k // 30 + i) % 9 == 0
        rain = max(0.0, rng.gauss(1.2, 0.6)) if shower else 0.0
        return {"rain_mm": round(rain, 1), "temp_c": round(28 + 4 * math.sin(2 * math.pi * k / 1440.0), 1),
                "wind_ms": round(abs(rng.gauss(4, 1.5)), 1), "gust_ms": round(abs(rng.gauss(7, 2)), 1)}
    jam = 25.0 if (k + 7 * i) % 240 < 20 else 0.0
    return {"speed_kmh": round(max(3.0, rng.gauss(55 - jam, 6)), 1), "flow_vph": round(abs(rng.gauss(1800, 200))),
            "occupancy_pct": round(min(100.0, abs(rng.gauss(18 + jam, 4))), 1)}


def make_readings(registry: SensorRegistry, total: int, seed: int = 7) -> list[Reading]:
    """``total`` readings, round-robin over the sensors, in time order."""
    rng = random.Random(seed)
    sensors = list(registry)
    t0 = 1_800_000_000.0
    out = []
    for n in range(total):
        k, i = divmod(n, len(sensors))
        s = sensors[i]
        t = t0 + 60.0 * k
        out.append(Reading(s.id, s.kind, s.district, t, _values(s.kind, i, k, rng), t,
                           f"cityeye/{s.district}/{s.kind}/{s.id}"))
    return out


def _records(readings: list[Reading], aggregate: int) -> Iterator[OutRecord]:
    """The backlog's records as the gateway writes them (chunks of 500 readings, aggregated per partition)."""
    for i in range(0, len(readings), 500):
        yield from build_records(readings[i:i + 500], all_topics().__getitem__, max_readings=aggregate,
                                 max_bytes=256 * 1024)


async def _produce(kafka: KafkaSettings, readings: list[Reading], aggregate: int) -> int:
    """Write the backlog as the gateway would (:func:`_records`); records sent."""
    producer = make_producer(kafka, "bench", linger_ms=20, max_batch_size=1024 * 1024)
    await producer.start()
    sent = 0
    try:
        for rec in _records(readings, aggregate):
            await producer.send(rec.topic, rec.value, key=rec.key, partition=rec.partition, headers=rec.headers)
            sent += 1
        await producer.flush()
    finally:
        await producer.stop()
    return sent


async def _raw_consumer(kafka: KafkaSettings, total: int) -> float:
    """Seconds for a raw aiokafka consumer to read and decode ``total`` readings."""
    consumer = make_consumer(kafka, *(readings_topic(k) for k in KINDS), group=f"raw-{uuid.uuid4().hex[:6]}")
    await consumer.start()
    try:
        seen, started = 0, None
        while seen < total:
            batch = await consumer.getmany(timeout_ms=1000, max_records=10_000)
            if started is None and batch:
                started = time.perf_counter()
            for msgs in batch.values():
                for m in msgs:
                    seen += len(readings_of(m.value, m.key, m.headers))
        return time.perf_counter() - (started or time.perf_counter())
    finally:
        await consumer.stop()


async def _faust_worker(settings: Settings, registry: SensorRegistry, total: int,
                        with_checks: bool) -> tuple[float, float, dict]:
    """Wall seconds and this process's CPU seconds for a fresh Faust worker group to process the ``total``
    backlog (both scaled to ``total`` from the readings counted after the first one), and its counters.

    The worker runs in this process (the broker is another), so the CPU time is the worker's own: on a
    shared machine it moves less with the load than the wall time does.
    """
    group = f"{settings.kafka.consumer_group_prefix}-{'checks' if with_checks else 'bare'}"
    s = settings.model_copy(update={"kafka": settings.kafka.model_copy(update={"consumer_group_prefix": group})})
    kwargs = {} if with_checks else {"checks_factory": lambda sensor: []}
    worker = StreamsWorker(s, registry=registry, dedicated_process=True, **kwargs)  # as `cityeye worker` runs
    await worker.start()
    try:
        await worker.wait_ready()
        rt = worker.streams.runtime
        while rt.readings == 0:
            await asyncio.sleep(0.001)
        started, cpu_started, start_count = time.perf_counter(), time.process_time(), rt.readings
        while rt.readings < total:
            await asyncio.sleep(0.01)
        elapsed, cpu = time.perf_counter() - started, time.process_time() - cpu_started
    finally:
        await worker.stop()
    counters = {"alert events": rt.events_sent, "snapshot writes": rt.snapshots.writes, "dead letters": rt.dead_letters,
                "records read directly": rt.refilled}
    scale = total / max(total - start_count, 1)
    return elapsed * scale, cpu * scale, counters


async def _check_events(kafka: KafkaSettings, registry: SensorRegistry, readings: list[Reading]) -> str:
    """Compare ``alerts.events`` with the pure engine's events for the same readings."""
    engine = SensorEngine(registry)
    engine.rules_version = builtin_rulebook().version  # the worker's events carry the rules they were raised under
    want = {e.event_id: to_json(e) for r in readings for e in engine.process(r)}
    consumer = make_consumer(kafka, TOPIC_ALERTS, group=None)
    await consumer.start()
    got: dict[str, bytes] = {}
    try:
        idle = 0
        while len(got) < len(want) and idle < 5:
            batch = await consumer.getmany(timeout_ms=500)
            idle = 0 if batch else idle + 1
            for msgs in batch.values():
                got.update((AlertEvent.from_json(m.value).event_id, m.value) for m in msgs)
    finally:
        await consumer.stop()
    same = got == want
    return f"alert events on the topic: {len(got)} distinct, pure engine: {len(want)}, identical: {same}"


def breakdown(registry: SensorRegistry, readings: list[Reading], aggregate: int, snapshot_every: int) -> dict[str, float]:
    """CPU µs per reading of the worker's parts on the same records, in this process, no Kafka.

    ``decode``: :func:`readings_of` of every record; ``engine bookkeeping``: the engine with no checks;
    ``building checks``: every sensor's default checks built once (amortised over the readings);
    ``default checks``: the engine with the default checks, less the two before; ``snapshots``: the
    engine's snapshot and its JSON for each sensor's first reading and every ``snapshot_every`` after, as
    the worker takes them.
    """
    records = [(rec.value, rec.key, rec.headers) for rec in _records(readings, aggregate)]
    cpu = time.process_time
    t = cpu()
    decoded = [(offset, readings_of(*rec)) for offset, rec in enumerate(records)]
    decode = cpu() - t

    def replay(engine: SensorEngine) -> float:
        snapshot_s = 0.0
        for offset, items in decoded:
            for item in by_sensor(items):  # as the worker runs a record's readings
                new = item.sensor_id not in engine
                engine.process(item, position=offset)
                if new or engine.due(item.sensor_id, snapshot_every):
                    s0 = cpu()
                    orjson.dumps(engine.snapshot(item.sensor_id))
                    snapshot_s += cpu() - s0
        return snapshot_s

    t = cpu()
    replay(SensorEngine(registry, checks_factory=lambda sensor: []))
    bare = cpu() - t
    for kind in {sensor.kind for sensor in registry}:  # the rules parsed and their models made: once a process
        default_checks_factory(next(sensor for sensor in registry if sensor.kind == kind))
    t = cpu()
    for sensor in registry:
        default_checks_factory(sensor)
    build = cpu() - t
    engine = SensorEngine(registry)
    engine.rules_version = builtin_rulebook().version
    t = cpu()
    snapshots = replay(engine)
    checks = cpu() - t - snapshots - build - bare
    n = len(readings) / 1e6
    return {"decode (readings_of)": decode / n, "engine bookkeeping (no checks)": bare / n,
            "building checks (each sensor once)": build / n, "default checks": checks / n,
            "snapshots (engine.snapshot + JSON)": snapshots / n}


def _load() -> str:
    with open("/proc/loadavg") as f:
        return " ".join(f.read().split()[:3])


async def run(sensors: int, total: int, snapshot_every: int, aggregate: int) -> None:
    print(f"load average {_load()} (before the run)")
    registry = make_registry(sensors)
    readings = make_readings(registry, total)
    with TansuServer() as server:
        kafka = KafkaSettings(bootstrap=server.bootstrap, profile="tansu", consumer_group_prefix=f"b{uuid.uuid4().hex[:6]}")
        await ensure_topics(kafka)
        settings = Settings(kafka=kafka, influx=InfluxSettings(enabled=False), snapshot_every=snapshot_every)
        t = time.perf_counter()
        records = await _produce(kafka, readings, aggregate)
        print(f"backlog: {total} readings from {sensors} sensors in {records} records (aggregate <= {aggregate}) "
              f"produced in {time.perf_counter() - t:.2f} s")
        raw_s = await _raw_consumer(kafka, total)
        bare_s, bare_cpu, bare_info = await _faust_worker(settings, registry, total, with_checks=False)
        real_s, real_cpu, real_info = await _faust_worker(settings, registry, total, with_checks=True)
        check = await _check_events(kafka, registry, readings)
    raw, bare, real = total / raw_s, total / bare_s, total / real_s
    print(f"{'path':<46}{'readings/s':>12}{'vs raw':>9}{'CPU us/reading':>16}")
    print(f"{'raw aiokafka consumer (getmany + readings_of)':<46}{raw:>12,.0f}{1.0:>9.3f}")
    print(f"{'Faust worker, no checks':<46}{bare:>12,.0f}{bare / raw:>9.3f}{1e6 * bare_cpu / total:>16.1f}"
          f"   {bare_info}")
    print(f"{'Faust worker, default detectors':<46}{real:>12,.0f}{real / raw:>9.3f}{1e6 * real_cpu / total:>16.1f}"
          f"   {real_info}")
    print(f"detectors vs no checks: {real / bare:.3f}; snapshot_every={snapshot_every}")
    print(f"per reading: default detectors {1e6 / real:.1f} us, no checks {1e6 / bare:.1f} us "
          f"(target: >= 50,000 readings/s per core with the default detectors: {'met' if real >= 50_000 else 'NOT met'})")
    print(check)
    parts = breakdown(registry, readings, aggregate, snapshot_every)
    print(f"per reading, CPU us, the same records replayed in this process without Kafka (load average {_load()}):")
    for name, us in parts.items():
        print(f"  {name:<44}{us:>8.1f}")
    rest = 1e6 * real_cpu / total - sum(parts.values())
    print(f"  {'sum':<44}{sum(parts.values()):>8.1f}")
    print(f"  {'rest of the Faust worker (Faust, aiokafka, runtime, GC)':<44}{rest:>8.1f}"
          f"   (its CPU above minus the sum)")
    print(f"load average {_load()} (after the run)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sensors", type=int, default=300)
    parser.add_argument("--readings", type=int, default=60_000)
    parser.add_argument("--snapshot-every", type=int, default=200)
    parser.add_argument("--aggregate", type=int, default=500,
                        help="readings per aggregated record (the gateway's default; 1: single records)")
    parser.add_argument("--quick", action="store_true", help="20 k readings")
    args = parser.parse_args()
    if args.quick:
        args.readings = min(args.readings, 20_000)
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    asyncio.run(run(args.sensors, args.readings, args.snapshot_every, args.aggregate))


if __name__ == "__main__":
    main()
