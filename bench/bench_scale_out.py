"""Scale-out: two workers against one, two gateways against one, same run, same brokers.

Each stage runs as separate processes (one core each at most), started by this
script as children that print their progress every 0.1 s; the figure is the
rate from 10 % of the backlog (or later, once every process is at work) to
90 % (start-up, a late group join and the last stragglers left out):

* workers: a group of 1 worker process, then (on a fresh Tansu) a group of 2,
  is started and, once every process is at work, a backlog of aggregated
  readings (bench_streams' sensors: water level, traffic, weather, default
  detectors) is written for it to drain;
* gateways: Mosquitto queues a backlog of QoS 1 readings for the persistent
  sessions of a shared-subscription group (``$share/<group>/<filter>``,
  MQTT 5), of 1 gateway, then of 2 gateways (Mosquitto spreads the messages
  round-robin over the group's sessions, also offline ones); the gateways are
  then started and drain their sessions into Kafka.

Prints readings/s for 1 and 2 processes and the ratio (target >= 1.8 on this
2-core machine; the brokers share the cores: Tansu and Mosquitto take their
part, so the ratio shows how far a stage is from CPU-bound scaling here).
No assertions: figures only.

    .venv/bin/python bench/bench_scale_out.py            # 60 k worker readings, 40 k gateway readings
    .venv/bin/python bench/bench_scale_out.py --quick    # 20 k / 10 k
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import tempfile
import time
from pathlib import Path

import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_streams import make_readings, make_registry  # noqa: E402

from cityeye.config import KafkaSettings, MqttSettings, Settings, load_settings  # noqa: E402
from cityeye.contracts import all_topics, format_ts, mqtt_topic  # noqa: E402
from cityeye.kafka import ensure_topics, make_producer  # noqa: E402
from cityeye.sensor_registry import load_registry  # noqa: E402
from ingest.aggregation import build_records  # noqa: E402
from launch.servers import MosquittoServer, TansuServer  # noqa: E402
from simulators.publisher import MqttPublisher  # noqa: E402

__all__ = ["main"]

GATEWAY_REGISTRY = Path(__file__).resolve().parent.parent / "simulators" / "demo_registry.yaml"


# -- children: one stage process each, printing "<monotonic> <count>" lines -------------------------

async def _child_worker(config: str) -> None:
    from streams.command import StreamsWorker

    settings = load_settings(config)
    worker = StreamsWorker(settings, registry=load_registry(settings.registry))
    await worker.start()
    await worker.wait_ready(120)
    await _report(lambda: worker.streams.runtime.readings)
    await worker.stop()


async def _child_gateway(config: str) -> None:
    from ingest.gateway import Gateway

    settings = load_settings(config)
    gateway = Gateway(settings, load_registry(settings.registry))
    await gateway.start()
    await _report(lambda: gateway.stats()["accepted"])
    await gateway.stop()


async def _report(count) -> None:
    """Print progress every 0.1 s until stdin closes (the parent is done)."""
    closed = asyncio.ensure_future(asyncio.to_thread(sys.stdin.read))
    while not closed.done():
        print(f"{time.monotonic():.4f} {count()}", flush=True)
        await asyncio.sleep(0.1)


# -- parent ----------------------------------------------------------------------------------------

async def _run_children(role: str, configs: list[Path], total: int, feed=None, timeout: float = 900.0) -> float:
    """Start one child per config, wait until their counts add up to ``total``; readings/s from 10 % to 90 %.

    ``feed`` (a coroutine function), if given, is awaited once every child reports (is ready) and the
    group had 3 s to settle: it writes the backlog.
    """
    procs = [await asyncio.create_subprocess_exec(
        sys.executable, __file__, f"--child-{role}", str(c), stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.DEVNULL) for c in configs]
    counts = [0] * len(procs)
    reported = [False] * len(procs)
    marks: dict[float | str, float] = {}
    deadline = time.monotonic() + timeout

    async def follow(i: int, proc) -> None:
        while True:
            line = await proc.stdout.readline()
            if not line:
                return
            try:
                at, n = line.split()
                counts[i] = int(n)
            except ValueError:  # something else the child printed
                continue
            reported[i] = True
            done = sum(counts)
            # the window opens at 10 % once every process is at work (a late group join is not scale-out)
            if 0.1 not in marks and done >= 0.1 * total and all(counts):
                marks[0.1], marks["start"] = float(at), done
            if 0.1 in marks and 0.9 not in marks and done >= 0.9 * total:
                marks[0.9], marks["end"] = float(at), done
            if done >= total:
                return

    followers = [asyncio.create_task(follow(i, p)) for i, p in enumerate(procs)]
    try:
        if feed is not None:
            while not all(reported):
                if time.monotonic() > deadline or any(f.done() for f in followers):
                    raise TimeoutError(f"{role}s did not all start")
                await asyncio.sleep(0.1)
            await asyncio.sleep(3.0)  # the group's rebalance after the last join
            await feed()
        while 0.9 not in marks:
            if time.monotonic() > deadline or all(f.done() for f in followers):
                raise TimeoutError(f"{role}s processed {sum(counts)} of {total}")
            await asyncio.sleep(0.05)
    finally:
        for p in procs:
            p.stdin.close()
        for p in procs:
            try:
                await asyncio.wait_for(p.wait(), 30)
            except asyncio.TimeoutError:
                p.kill()
        for f in followers:
            f.cancel()
    print(f"  {len(procs)} {role}(s): per process {counts}")
    if marks[0.9] <= marks[0.1]:
        raise RuntimeError(f"{role}s: no measuring window (a process started work only at the end); "
                           "use a larger backlog")
    return (marks["end"] - marks["start"]) / (marks[0.9] - marks[0.1])


def _write_config(path: Path, data: dict) -> Path:
    path.write_text(yaml.safe_dump(data))
    return path


async def bench_workers(tmp: Path, sensors: int, total: int) -> tuple[float, float]:
    registry = make_registry(sensors)
    reg_file = _write_config(tmp / "registry.yaml", {"sensors": [s.model_dump(mode="json") for s in registry]})
    readings = make_readings(registry, total)
    rates = []
    for n in (1, 2):  # a fresh broker each: both groups read a backlog written once they are at work
        with TansuServer(workdir=tmp / f"tansu-{n}") as tansu:
            kafka = KafkaSettings(bootstrap=tansu.bootstrap, profile="tansu")
            await ensure_topics(kafka)

            async def feed() -> None:
                producer = make_producer(kafka, "bench", linger_ms=20, max_batch_size=1024 * 1024)
                await producer.start()
                for i in range(0, total, 500):
                    for rec in build_records(readings[i:i + 500], all_topics().__getitem__, max_readings=500,
                                             max_bytes=256 * 1024):
                        await producer.send(rec.topic, rec.value, key=rec.key, partition=rec.partition,
                                            headers=rec.headers)
                await producer.flush()
                await producer.stop()

            conf = {"kafka": {"bootstrap": tansu.bootstrap, "profile": "tansu"},
                    "influx": {"enabled": False}, "registry": str(reg_file), "state_dir": str(tmp / "state")}
            configs = [_write_config(tmp / f"worker-{n}-{i}.yaml", conf) for i in range(n)]
            rates.append(await _run_children("worker", configs, total, feed))
    return rates[0], rates[1]


def _gateway_payloads(count: int) -> list[tuple[str, bytes]]:
    t0 = time.time() - count
    sensors = [("huangpu", "wl-huangpu-01"), ("minhang", "wl-minhang-01")]
    return [(mqtt_topic(d, "water_level", s), json.dumps({"ts": format_ts(t0 + i), "values": {
        "level_m": round(2.0 + (i % 500) / 1000, 3)}}, separators=(",", ":")).encode())
        for i, (d, s) in ((i, sensors[i % 2]) for i in range(count))]


async def bench_gateways(tmp: Path, total: int) -> tuple[float, float]:
    from ingest.gateway import Gateway

    with TansuServer(workdir=tmp / "gw-tansu") as tansu, MosquittoServer(workdir=tmp / "gw-mqtt") as broker:
        kafka = KafkaSettings(bootstrap=tansu.bootstrap, profile="tansu")
        await ensure_topics(kafka)
        rates = []
        for n in (1, 2):
            group = f"gw{n}"
            configs = []
            for i in range(n):  # the group's persistent sessions, then offline: the broker queues for them
                mqtt = {"port": broker.port, "client_id": f"bench-{group}-{i}", "protocol": "5", "share_group": group}
                conf = {"kafka": {"bootstrap": tansu.bootstrap, "profile": "tansu"}, "mqtt": mqtt,
                        "registry": str(GATEWAY_REGISTRY), "influx": {"enabled": False}}
                configs.append(_write_config(tmp / f"gateway-{n}-{i}.yaml", conf))
                settings = Settings(kafka=kafka, mqtt=MqttSettings(**mqtt), registry=str(GATEWAY_REGISTRY))
                gw = Gateway(settings, load_registry(GATEWAY_REGISTRY))
                await gw.start()
                await gw.stop()
            t = time.perf_counter()
            await asyncio.to_thread(_publish, broker.port, _gateway_payloads(total))
            print(f"  {total} readings queued for {n} gateway session(s) in {time.perf_counter() - t:.1f} s")
            rates.append(await _run_children("gateway", configs, total))
    return rates[0], rates[1]


def _publish(port: int, items: list[tuple[str, bytes]]) -> None:
    with MqttPublisher(MqttSettings(port=port), max_inflight=1000) as pub:
        for topic, body in items:
            pub.publish(topic, body)
        pub.flush(900)


async def run(args: argparse.Namespace) -> None:
    load = os.getloadavg()
    print(f"load average at start: {load[0]:.2f} {load[1]:.2f} {load[2]:.2f} ({os.cpu_count()} cores)")
    with tempfile.TemporaryDirectory(prefix="cityeye-scale-") as tmp:
        rows = []
        if not args.gateways_only:
            print(f"workers: {args.worker_readings} readings from {args.sensors} sensors, default detectors")
            one, two = await bench_workers(Path(tmp), args.sensors, args.worker_readings)
            rows.append(("workers (readings/s)", one, two))
        if not args.workers_only:
            print(f"gateways: {args.gateway_readings} QoS 1 readings, MQTT 5 shared subscription")
            one, two = await bench_gateways(Path(tmp), args.gateway_readings)
            rows.append(("gateways (readings/s)", one, two))
    print(f"{'stage':<24}{'1 process':>12}{'2 processes':>14}{'ratio':>8}   target >= 1.8")
    for name, one, two in rows:
        print(f"{name:<24}{one:>12,.0f}{two:>14,.0f}{two / one:>8.2f}   {'met' if two / one >= 1.8 else 'NOT met'}")
    load = os.getloadavg()
    print(f"load average at end: {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}")


def main() -> None:
    if len(sys.argv) == 3 and sys.argv[1] in ("--child-worker", "--child-gateway"):
        child = _child_worker if sys.argv[1] == "--child-worker" else _child_gateway
        asyncio.run(child(sys.argv[2]))
        return
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sensors", type=int, default=300)
    parser.add_argument("--worker-readings", type=int, default=60_000)
    parser.add_argument("--gateway-readings", type=int, default=40_000)
    parser.add_argument("--quick", action="store_true", help="20 k worker readings, 10 k gateway readings")
    parser.add_argument("--workers-only", action="store_true")
    parser.add_argument("--gateways-only", action="store_true")
    args = parser.parse_args()
    if args.quick:
        args.worker_readings, args.gateway_readings = 20_000, 10_000
    asyncio.run(run(args))


if __name__ == "__main__":
    main()
