"""Scale-out: two workers against one, two gateways against one, same run, same brokers.

Each stage runs as separate processes (one core each at most), started by this
script as children that print their progress every 0.1 s.

* workers: the figure is the rate from 10 % of the backlog (or later, once
  every process is at work) to 90 % (start-up, a late group join and the last
  stragglers left out);
* gateways: each child samples its own count every 10 ms and reports the
  history; the figure is the readings all gateways forwarded together while
  every one of them was forwarding (from the latest first reading to the
  earliest last one), divided by that time: the steady state of the group,
  without the processes' start-up (a second process started 0.3 s after the
  first on a loaded machine) and the tail where one works alone. The rate
  over the whole busy window (first reading of any to last of any) is printed
  beside it. Every session gets the same backlog, ``--gateway-readings`` per
  gateway (100 k; ``--quick``: 30 k): Mosquitto drains a long session queue
  more slowly than a short one, so splitting one backlog over two sessions
  flattered the pair (one 60 k queue drained at 36 k/s, two 30 k queues at
  73 k/s each, same run). With 10 k readings a gateway drained its share in
  a fraction of a second and the 0.1 s progress lines gave 3 to 5 samples per
  window. The backlog is queued before the gateways start (the publisher is
  not part of the timed window).

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

    .venv/bin/python bench/bench_scale_out.py            # 60 k worker readings, 100 k readings per gateway
    .venv/bin/python bench/bench_scale_out.py --quick    # 20 k / 30 k
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
    worker = StreamsWorker(settings, registry=load_registry(settings.registry), dedicated_process=True)
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
    """Print progress every 0.1 s until stdin closes (the parent is done), then the CPU seconds this
    process used since its count first grew (start-up left out) and the count's history: ``samples <cpu> <t>:<count> ...``, a sample every 10 ms at
    which the count had grown."""
    closed = asyncio.ensure_future(asyncio.to_thread(sys.stdin.read))
    samples: list[tuple[float, int]] = []
    printed, cpu_at_first = 0.0, 0.0
    while not closed.done():
        now, n = time.monotonic(), count()
        if n and (not samples or n > samples[-1][1]):
            if not samples:
                cpu_at_first = time.process_time()
            samples.append((now, n))
        if now - printed >= 0.1:
            print(f"{now:.4f} {n}", flush=True)
            printed = now
        await asyncio.sleep(0.01)
    print(f"samples {time.process_time() - cpu_at_first:.3f} " + " ".join(f"{t:.4f}:{n}" for t, n in samples), flush=True)


def _count_at(samples: list[tuple[float, int]], at: float) -> float:
    """A child's count at ``at``, linear between its samples."""
    before = max((s for s in samples if s[0] <= at), default=(at, 0))
    after = min((s for s in samples if s[0] >= at), default=before)
    if after[0] == before[0]:
        return float(before[1])
    return before[1] + (after[1] - before[1]) * (at - before[0]) / (after[0] - before[0])


def _overlap_rate(histories: list[list[tuple[float, int]]]) -> tuple[float, float, float]:
    """Readings/s of all children together while every one was forwarding (from the latest first sample
    to the earliest last one), that window's length, and the busy window's (first sample to last)."""
    start, end = max(h[0][0] for h in histories), min(h[-1][0] for h in histories)
    busy = max(h[-1][0] for h in histories) - min(h[0][0] for h in histories)
    if end <= start:
        raise RuntimeError("the processes never forwarded at the same time; use a larger backlog")
    done = sum(_count_at(h, end) - _count_at(h, start) for h in histories)
    return done / (end - start), end - start, busy


# -- parent ----------------------------------------------------------------------------------------

async def _run_children(role: str, configs: list[Path], total: int, feed=None, timeout: float = 900.0,
                        busy_window: bool = False, whole: list[float] | None = None) -> float:
    """Start one child per config, wait until their counts add up to ``total``; readings/s from 10 % to 90 %
    (``busy_window``: while every child was forwarding, see the module docstring; the rate over the whole
    busy window is appended to ``whole``).

    ``feed`` (a coroutine function), if given, is awaited once every child reports (is ready) and the
    group had 3 s to settle: it writes the backlog.
    """
    procs = [await asyncio.create_subprocess_exec(
        sys.executable, __file__, f"--child-{role}", str(c), stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.DEVNULL) for c in configs]
    counts = [0] * len(procs)
    reported = [False] * len(procs)
    histories: list[list[tuple[float, int]] | None] = [None] * len(procs)
    cpu = [0.0] * len(procs)
    marks: dict[float | str, float] = {}
    deadline = time.monotonic() + timeout

    async def follow(i: int, proc) -> None:
        while True:
            line = await proc.stdout.readline()
            if not line:
                return
            if line.startswith(b"samples"):
                cpu[i] = float(line.split()[1])
                histories[i] = [(float(t), int(n)) for t, n in (w.split(b":") for w in line.split()[2:])]
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

    followers = [asyncio.create_task(follow(i, p)) for i, p in enumerate(procs)]
    try:
        if feed is not None:
            while not all(reported):
                if time.monotonic() > deadline or any(f.done() for f in followers):
                    raise TimeoutError(f"{role}s did not all start")
                await asyncio.sleep(0.1)
            await asyncio.sleep(3.0)  # the group's rebalance after the last join
            await feed()
        while 0.9 not in marks or (busy_window and sum(counts) < total):
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
        try:  # the children print their window once stdin closes
            await asyncio.wait_for(asyncio.gather(*followers), 30)
        except asyncio.TimeoutError:
            for f in followers:
                f.cancel()
    print(f"  {len(procs)} {role}(s): per process {counts}")
    if busy_window:
        if not all(histories):
            raise RuntimeError(f"{role}s: a process forwarded nothing ({counts})")
        rate, overlap, busy = _overlap_rate(histories)
        first = min(h[0][0] for h in histories)
        print(f"  all {len(procs)} at work for {overlap:.2f} s of {busy:.2f} s (per process "
              + ", ".join(f"{h[0][0] - first:+.2f} .. {h[-1][0] - first:+.2f} s" for h in histories)
              + f"); over the whole {busy:.2f} s: {sum(counts) / busy:,.0f} readings/s; CPU us per reading "
              + ", ".join(f"{c / n * 1e6:.1f}" for c, n in zip(cpu, counts)) + " (from its first reading on)")
        if whole is not None:
            whole.append(sum(counts) / busy)
        return rate
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


async def bench_gateways(tmp: Path, per_gateway: int) -> tuple[tuple[float, float], tuple[float, float]]:
    """Readings/s of 1 and 2 gateways while all of a group forward, and over the group's whole busy window."""
    from ingest.gateway import Gateway

    with TansuServer(workdir=tmp / "gw-tansu") as tansu, MosquittoServer(workdir=tmp / "gw-mqtt") as broker:
        kafka = KafkaSettings(bootstrap=tansu.bootstrap, profile="tansu")
        await ensure_topics(kafka)
        rates, whole = [], []
        for n in (1, 2):
            group, total = f"gw{n}", n * per_gateway
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
            brokers_cpu = [_cpu_seconds(broker.proc.pid), _cpu_seconds(tansu.proc.pid)]
            rates.append(await _run_children("gateway", configs, total, busy_window=True, whole=whole))
            mosquitto_cpu, tansu_cpu = (_cpu_seconds(p.pid) - c for p, c in zip((broker.proc, tansu.proc), brokers_cpu))
            print(f"  CPU s meanwhile (children's start-up and stop included): Mosquitto {mosquitto_cpu:.2f}, "
                  f"Tansu {tansu_cpu:.2f}")
    return (rates[0], rates[1]), (whole[0], whole[1])


def _cpu_seconds(pid: int) -> float:
    """User and system CPU seconds process ``pid`` has used (Linux ``/proc``)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _publish(port: int, items: list[tuple[str, bytes]]) -> None:
    with MqttPublisher(MqttSettings(port=port), max_inflight=1000) as pub:
        for i, (topic, body) in enumerate(items):
            if i % 1000 == 0:  # paho numbers messages with 16-bit ids: stay within its window
                pub.wait_below(pub.window, 300)
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
            print(f"gateways: {args.gateway_readings} QoS 1 readings per gateway session, MQTT 5 shared subscription")
            (one, two), (one_whole, two_whole) = await bench_gateways(Path(tmp), args.gateway_readings)
            rows.append(("gateways (readings/s)", one, two))
            rows.append(("  whole busy window", one_whole, two_whole))
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
    parser.add_argument("--gateway-readings", type=int, default=100_000, help="backlog per gateway session")
    parser.add_argument("--quick", action="store_true", help="20 k worker readings, 30 k readings per gateway")
    parser.add_argument("--workers-only", action="store_true")
    parser.add_argument("--gateways-only", action="store_true")
    args = parser.parse_args()
    if args.quick:
        args.worker_readings, args.gateway_readings = 20_000, 30_000
    asyncio.run(run(args))


if __name__ == "__main__":
    main()
