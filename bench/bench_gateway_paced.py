"""The gateway's CPU per message and batch size when it keeps up with a paced stream.

``bench_gateway.py`` times the drain of a backlog (large batches); a live
stream arrives a few messages at a time, and then the gateway's fixed costs
per batch (Kafka records and produce requests, PUBACK writes, wake-ups,
metrics) dominate. This bench starts its own Mosquitto and Tansu, runs the
gateway in this process and, for each rate, publishes that many readings/s
for ``--seconds`` from paced_publishers.py's lean paced publisher (another
process, over ``--sensors`` registered gauges), waits until the gateway has
forwarded them, and prints per rate: messages, batches, messages per batch,
the gateway's CPU per message (this process, every thread, from the first
reading published until the last was forwarded) and how far it lagged.

Asserts nothing about time. Run:
``.venv/bin/python bench/bench_gateway_paced.py --rates 1000,5000,10000 --seconds 20``
(``--linger MS`` sets ``ingest.intake_linger_ms``; left out, the code's default).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import tempfile
import time
from pathlib import Path

from paced_publishers import publish_paced, write_registry  # bench/, this script's directory
from cityeye.config import IngestSettings, KafkaSettings, MqttSettings, Settings
from cityeye.kafka import ensure_topics
from cityeye.sensor_registry import load_registry
from ingest.gateway import Gateway
from launch.servers import TansuServer, mqtt_server

__all__ = ["main", "paced_run"]


async def paced_run(settings: Settings, sensors: int, rate: float, seconds: float) -> dict:
    """Run a gateway while ``rate`` readings/s are published for ``seconds``; its figures."""
    gateway = Gateway(settings, load_registry(Path(settings.registry)))
    await gateway.start()
    try:
        load = os.getloadavg()[0]
        t0, cpu0 = time.perf_counter(), time.process_time()
        reports = await publish_paced(settings.mqtt.port, sensors, rate, seconds)
        published = sum(r["published"] for r in reports)
        forwarded_at_end = gateway.stats()["messages"]
        deadline = time.perf_counter() + 60
        while gateway.stats()["messages"] < published and time.perf_counter() < deadline:
            await asyncio.sleep(0.005)
        elapsed, cpu = time.perf_counter() - t0, time.process_time() - cpu0
        stats = gateway.stats()
    finally:
        await gateway.stop()
    return {"rate": rate, "published": published, "messages": stats["messages"], "batches": stats["batches"],
            "behind_at_end": published - forwarded_at_end, "cpu_us": cpu / max(1, stats["messages"]) * 1e6,
            "core": cpu / elapsed, "load": (load, os.getloadavg()[0])}


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rates", default="1000,5000,10000", help="readings/s, comma-separated (default: %(default)s)")
    parser.add_argument("--seconds", type=float, default=20.0, help="seconds of publishing per rate")
    parser.add_argument("--sensors", type=int, default=1000, help="registered gauges published round-robin")
    parser.add_argument("--linger", type=float, default=None, help="ingest.intake_linger_ms (default: the code's)")
    args = parser.parse_args()
    ingest = {} if args.linger is None else {"intake_linger_ms": args.linger}

    with tempfile.TemporaryDirectory(prefix="cityeye-bench-") as tmp:
        broker = mqtt_server(workdir=Path(tmp) / "mqtt").start()
        tansu = TansuServer(workdir=Path(tmp) / "tansu").start()
        try:
            registry = write_registry(Path(tmp) / "registry.yaml", args.sensors)
            settings = Settings(kafka=KafkaSettings(bootstrap=tansu.bootstrap, profile="tansu"),
                                mqtt=MqttSettings(port=broker.port, client_id="bench-paced-gateway"),
                                ingest=IngestSettings(**ingest), registry=str(registry))
            await ensure_topics(settings.kafka)
            runs = [await paced_run(settings, args.sensors, float(rate), args.seconds)
                    for rate in args.rates.split(",")]
        finally:
            tansu.cleanup()
            broker.cleanup()

    print(f"gateway paced, {args.seconds:g} s a rate, intake_linger_ms "
          f"{getattr(settings.ingest, 'intake_linger_ms', 'n/a (not in this code)')}, {os.cpu_count()} cores")
    for r in runs:
        print(f"  {r['rate']:7.0f}/s: {r['messages']:7d} of {r['published']:7d} messages in {r['batches']:6d} batches "
              f"({r['messages'] / max(1, r['batches']):6.1f} a batch), CPU {r['cpu_us']:6.1f} us a message "
              f"({r['core']:.0%} of a core), {r['behind_at_end']:6d} behind at the end, "
              f"load {r['load'][0]:.1f} -> {r['load'][1]:.1f}")


if __name__ == "__main__":
    asyncio.run(main())
