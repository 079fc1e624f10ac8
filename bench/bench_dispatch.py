"""Notification latency: alert event → Kafka → dispatcher → webhook receiver (p50 / p99).

Starts its own Tansu broker and a local aiohttp receiver, runs the
dispatcher in-process (unsharded: the router re-produces each event to
``alerts.grouped``, the partition consumer applies it to partition 0's
SQLite store with fsync, outbox, the shared webhook notifier), produces ``--events`` firing events (one
sensor each, grouped by sensor with ``group_wait: 0`` so each is notified
on its own) at ``--rate`` per second, and measures, per notification, the
time from just before the event was produced to its arrival at the
receiver, and the drain time: the first event produced to the last
notification received. ``--burst`` produces every event at once (no
pacing, one flush) to time how fast a backlog drains. Prints figures only.

    .venv/bin/python bench/bench_dispatch.py --events 500 --rate 50
    .venv/bin/python bench/bench_dispatch.py --events 1000 --burst
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import statistics
import tempfile
import time
import uuid
from pathlib import Path

from aiohttp import web

from alerts.config import parse_alerting_config
from alerts.dispatcher import Dispatcher
from cityeye.config import InfluxSettings, KafkaSettings, Settings
from cityeye.contracts import TOPIC_ALERTS, AlertEvent, alert_id_for, to_json
from cityeye.kafka import ensure_topics, make_producer
from launch.servers import TansuServer
from simulators import DEMO_REGISTRY

__all__ = ["main", "run_bench"]


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(q * (len(ordered) - 1))))]


async def run_bench(events: int, rate: float | None, workdir: Path) -> dict[str, float]:
    """Run once; ``rate`` None: a burst."""
    arrivals: dict[str, float] = {}

    async def receive(request: web.Request) -> web.Response:
        body = await request.json()
        for alert in body["alerts"]:
            arrivals.setdefault(alert["sensor_id"], time.time())
        return web.json_response({"ok": True})

    app = web.Application()
    app.router.add_post("/hook", receive)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]

    broker = TansuServer(workdir=workdir / "tansu")
    broker.start()
    try:
        kafka = KafkaSettings(bootstrap=broker.bootstrap, profile="tansu", consumer_group_prefix=uuid.uuid4().hex[:6])
        await ensure_topics(kafka)
        settings = Settings(kafka=kafka, influx=InfluxSettings(enabled=False), state_dir=str(workdir / "state"),
                            registry=str(DEMO_REGISTRY))  # the dispatcher needs one (as `cityeye dispatcher` has)
        cfg = parse_alerting_config({
            "receivers": [{"name": "desk", "type": "webhook", "url": f"http://127.0.0.1:{port}/hook"}],
            "route": {"receiver": "desk", "group_by": ["sensor"], "group_wait": 0, "group_interval": 0},
            "timings": {"keep_firing_for": 0, "tick": 0.05}, "api": {"enabled": False}}, "bench")
        dispatcher = Dispatcher(settings, cfg)
        stop = asyncio.Event()
        task = asyncio.create_task(dispatcher.run(stop))
        await dispatcher.ready.wait()
        producer = make_producer(kafka, "bench")
        await producer.start()
        # warm-up: let the consumer join its group before measuring
        await producer.send_and_wait(TOPIC_ALERTS, to_json(_event("warmup", time.time())))
        while "warmup" not in arrivals:
            await asyncio.sleep(0.01)
        sent: dict[str, float] = {}
        t_start = time.time()
        for i in range(events):
            sensor = f"wl-bench-{i:05d}"
            sent[sensor] = time.time()
            if rate is None:
                await producer.send(TOPIC_ALERTS, to_json(_event(sensor, sent[sensor])))
                continue
            await producer.send_and_wait(TOPIC_ALERTS, to_json(_event(sensor, sent[sensor])))
            await asyncio.sleep(max(0.0, t_start + (i + 1) / rate - time.time()))
        await producer.flush()
        deadline = time.time() + 60
        while len([s for s in sent if s in arrivals]) < events and time.time() < deadline:
            await asyncio.sleep(0.05)
        await producer.stop()
        stop.set()
        await task
    finally:
        broker.cleanup()
        await runner.cleanup()
    latencies = [arrivals[s] - t for s, t in sent.items() if s in arrivals]
    drain = max((arrivals[s] for s in sent if s in arrivals), default=t_start) - t_start
    return {"events": events, "delivered": len(latencies), "rate_per_s": rate, "drain_s": drain,
            "p50_ms": 1000 * statistics.median(latencies), "p99_ms": 1000 * percentile(latencies, 0.99),
            "max_ms": 1000 * max(latencies), "mean_ms": 1000 * statistics.fmean(latencies)}


def _event(sensor: str, t: float) -> AlertEvent:
    return AlertEvent(alert_id=alert_id_for(sensor, "level_warning", t), sensor_id=sensor, kind="water_level",
                      district="bench", rule="level_warning", severity="orange", state="firing", started_at=t,
                      updated_at=t, value=4.8, threshold=4.5, message="bench")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=500)
    parser.add_argument("--rate", type=float, default=50.0, help="events per second")
    parser.add_argument("--burst", action="store_true", help="produce every event at once (ignores --rate)")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    with tempfile.TemporaryDirectory() as tmp:
        r = asyncio.run(run_bench(args.events, None if args.burst else args.rate, Path(tmp)))
    pace = "one burst" if r["rate_per_s"] is None else f"{r['rate_per_s']:g} events/s"
    print(f"notification latency, event produced -> webhook received ({r['delivered']}/{r['events']} delivered, "
          f"{pace}):")
    print(f"  p50 {r['p50_ms']:.1f} ms   p99 {r['p99_ms']:.1f} ms   max {r['max_ms']:.1f} ms   mean {r['mean_ms']:.1f} ms"
          f"   drained in {r['drain_s']:.2f} s")


if __name__ == "__main__":
    main()
