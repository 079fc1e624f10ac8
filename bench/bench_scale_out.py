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
  gateway (150 k; ``--quick``: 30 k): Mosquitto drains a long session queue
  more slowly than a short one, so splitting one backlog over two sessions
  flattered the pair (one 60 k queue drained at 36 k/s, two 30 k queues at
  73 k/s each, same run). The backlog is queued before the gateways start
  (``bench/mqtt_backlog.py``, ~30 k messages/s, where paho published 3.5 k/s):
  the gateways drain at their own speed, the publisher is not part of the
  timed window. 1 gateway then 2, ``--rounds`` times (3), each run on a fresh
  Tansu (it slows down with what it holds): the ratio of each round and their
  median. Each run has a share group and sessions of its own, removed once it
  is done. Each gateway also reports its threads' scheduler statistics
  (``/proc/<pid>/task/*/schedstat``) over its drain: the seconds it ran on a
  CPU and the seconds it was runnable but waited for one; a large wait share
  says the gateways (with Mosquitto and Tansu, whose waits are printed too)
  are short of CPUs, not that they do not scale.

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

    .venv/bin/python bench/bench_scale_out.py                    # 60 k worker readings; 3 rounds, 150 k per gateway
    .venv/bin/python bench/bench_scale_out.py --quick            # 20 k / 2 rounds of 30 k
    .venv/bin/python bench/bench_scale_out.py --gateways-only
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_streams import make_readings, make_registry  # noqa: E402
from mqtt_backlog import end_sessions, preload  # noqa: E402

from cityeye.config import KafkaSettings, MqttSettings, Settings, load_settings  # noqa: E402
from cityeye.contracts import all_topics, format_ts, mqtt_topic  # noqa: E402
from cityeye.kafka import ensure_topics, make_producer  # noqa: E402
from cityeye.sensor_registry import load_registry  # noqa: E402
from ingest.aggregation import build_records  # noqa: E402
from launch.proc_usage import proc_sample, sched_delta, sched_times  # noqa: E402
from launch.servers import MosquittoServer, TansuServer  # noqa: E402

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
    process used since its count first grew (start-up left out), its threads' seconds on a CPU and waiting
    for one over the same stretch (to its count's last growth) and the count's history:
    ``samples <cpu> <on cpu> <waiting> <t>:<count> ...``, a sample every 10 ms at which the count had grown."""
    closed = asyncio.ensure_future(asyncio.to_thread(sys.stdin.read))
    samples: list[tuple[float, int]] = []
    printed, cpu_at_first = 0.0, 0.0
    sched_first = sched_last = {}
    while not closed.done():
        now, n = time.monotonic(), count()
        if n and (not samples or n > samples[-1][1]):
            sched_last = sched_times(os.getpid())
            if not samples:
                cpu_at_first, sched_first = time.process_time(), sched_last
            samples.append((now, n))
        if now - printed >= 0.1:
            print(f"{now:.4f} {n}", flush=True)
            printed = now
        await asyncio.sleep(0.01)
    on_cpu, waiting = sched_delta(sched_first, sched_last)
    print(f"samples {time.process_time() - cpu_at_first:.3f} {on_cpu:.3f} {waiting:.3f} "
          + " ".join(f"{t:.4f}:{n}" for t, n in samples), flush=True)


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
                        busy_window: bool = False, whole: list[float] | None = None,
                        waits: list[float] | None = None) -> float:
    """Start one child per config, wait until their counts add up to ``total``; readings/s from 10 % to 90 %
    (``busy_window``: while every child was forwarding, see the module docstring; the rate over the whole
    busy window is appended to ``whole``, each child's share of its runnable time spent waiting for a CPU
    to ``waits``).

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
    sched = [(0.0, 0.0)] * len(procs)
    marks: dict[float | str, float] = {}
    deadline = time.monotonic() + timeout

    async def follow(i: int, proc) -> None:
        while True:
            line = await proc.stdout.readline()
            if not line:
                return
            if line.startswith(b"samples"):
                words = line.split()
                cpu[i], sched[i] = float(words[1]), (float(words[2]), float(words[3]))
                histories[i] = [(float(t), int(n)) for t, n in (w.split(b":") for w in words[4:])]
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
        print("  scheduler, over each one's drain: " + "; ".join(
            f"on a CPU {run:.2f} s, waiting for one {wait:.2f} s ({wait / max(run + wait, 1e-9):.0%})"
            for run, wait in sched))
        if whole is not None:
            whole.append(sum(counts) / busy)
        if waits is not None:
            waits.extend(wait / max(run + wait, 1e-9) for run, wait in sched)
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


async def _gateway_run(tmp: Path, broker: MosquittoServer, n: int, per_gateway: int,
                       tag: str) -> tuple[float, float, list[float]]:
    """One run of ``n`` gateways on a fresh Tansu: their backlog queued, then drained. Returns the readings/s
    while all of them forwarded, over their whole busy window, and each one's share of its runnable time
    spent waiting for a CPU. The run's group and sessions are its own, removed at its end (left subscribed,
    they had Mosquitto queue every later backlog too: docs/contracts.md, session 9)."""
    group = f"gw-{tag}"
    client_ids = [f"bench-{group}-{i}" for i in range(n)]
    try:
        return await _gateway_drain(tmp, broker, group, client_ids, per_gateway, tag)
    finally:
        await asyncio.to_thread(end_sessions, broker.port, client_ids)


async def _gateway_drain(tmp: Path, broker: MosquittoServer, group: str, client_ids: list[str], per_gateway: int,
                         tag: str) -> tuple[float, float, list[float]]:
    """:func:`_gateway_run`'s work, for the sessions ``client_ids`` of the shared-subscription ``group``."""
    from ingest.gateway import Gateway

    n, total = len(client_ids), len(client_ids) * per_gateway
    with TansuServer(workdir=tmp / f"gw-tansu-{tag}") as tansu:
        kafka = KafkaSettings(bootstrap=tansu.bootstrap, profile="tansu")
        await ensure_topics(kafka)
        configs = []
        for i, client_id in enumerate(client_ids):  # the group's persistent sessions, then offline
            mqtt = {"port": broker.port, "client_id": client_id, "protocol": "5", "share_group": group}
            conf = {"kafka": {"bootstrap": tansu.bootstrap, "profile": "tansu"}, "mqtt": mqtt,
                    "registry": str(GATEWAY_REGISTRY), "influx": {"enabled": False}}
            configs.append(_write_config(tmp / f"gateway-{tag}-{i}.yaml", conf))
            settings = Settings(kafka=kafka, mqtt=MqttSettings(**mqtt), registry=str(GATEWAY_REGISTRY))
            gw = Gateway(settings, load_registry(GATEWAY_REGISTRY))
            await gw.start()
            await gw.stop()
        seconds = await asyncio.to_thread(preload, broker.port, _gateway_payloads(total))
        print(f"  {total} readings queued for {n} gateway session(s) in {seconds:.1f} s ({total / seconds:,.0f}/s)")
        servers = {"Mosquitto": broker.proc.pid, "Tansu": tansu.proc.pid}
        before = {name: (proc_sample(pid)[1], sched_times(pid)) for name, pid in servers.items()}
        whole, waits = [], []
        rate = await _run_children("gateway", configs, total, busy_window=True, whole=whole, waits=waits)
        print("  servers meanwhile (the children's start-up and stop included): " + "; ".join(
            f"{name} CPU {proc_sample(pid)[1] - before[name][0]:.2f} s, waiting for one "
            f"{sched_delta(before[name][1], sched_times(pid))[1]:.2f} s" for name, pid in servers.items()))
    return rate, whole[0], waits


async def bench_gateways(tmp: Path, per_gateway: int, rounds: int) -> list[tuple[float, float, float, float]]:
    """Per round, 1 gateway then 2: readings/s while all of a group forward (1, 2), over the group's whole busy
    window (1, 2); prints each round's ratio and the gateways' waits for a CPU."""
    out = []
    waits: dict[int, list[float]] = {1: [], 2: []}
    with MosquittoServer(workdir=tmp / "gw-mqtt") as broker:
        for r in range(1, rounds + 1):
            (one, one_whole, wait_one), (two, two_whole, wait_two) = [
                await _gateway_run(tmp, broker, n, per_gateway, f"{r}-{n}") for n in (1, 2)]
            waits[1] += wait_one
            waits[2] += wait_two
            load = os.getloadavg()
            print(f"round {r}: 1 gateway {one:,.0f}/s, 2 gateways {two:,.0f}/s, ratio {two / one:.2f} "
                  f"(whole busy window {two_whole / one_whole:.2f}); load average {load[0]:.2f}", flush=True)
            out.append((one, two, one_whole, two_whole))
    print("gateways' share of their runnable time spent waiting for a CPU (median over the rounds): "
          f"1 gateway {statistics.median(waits[1]):.0%}, 2 gateways {statistics.median(waits[2]):.0%}")
    return out


def _write_rows(rows: list[tuple[str, float, float, float]]) -> None:
    print(f"{'stage':<24}{'1 process':>12}{'2 processes':>14}{'ratio':>8}   target >= 1.8")
    for name, one, two, ratio in rows:
        print(f"{name:<24}{one:>12,.0f}{two:>14,.0f}{ratio:>8.2f}   {'met' if ratio >= 1.8 else 'NOT met'}")


async def run(args: argparse.Namespace) -> None:
    load = os.getloadavg()
    print(f"load average at start: {load[0]:.2f} {load[1]:.2f} {load[2]:.2f} ({os.cpu_count()} cores)")
    with tempfile.TemporaryDirectory(prefix="cityeye-scale-") as tmp:
        rows = []
        if not args.gateways_only:
            print(f"workers: {args.worker_readings} readings from {args.sensors} sensors, default detectors")
            one, two = await bench_workers(Path(tmp), args.sensors, args.worker_readings)
            rows.append(("workers (readings/s)", one, two, two / one))
        if not args.workers_only:
            print(f"gateways: {args.gateway_readings} QoS 1 readings per gateway session, MQTT 5 shared subscription, "
                  f"{args.rounds} round(s)")
            rounds = await bench_gateways(Path(tmp), args.gateway_readings, args.rounds)
            ratios = [two / one for one, two, _, _ in rounds]
            whole_ratios = [two / one for _, _, one, two in rounds]
            print("gateways: ratio per round " + ", ".join(f"{r:.2f}" for r in ratios)
                  + f", median {statistics.median(ratios):.2f}; over the whole busy window "
                  + ", ".join(f"{r:.2f}" for r in whole_ratios) + f", median {statistics.median(whole_ratios):.2f}")
            medians = [statistics.median(column) for column in zip(*rounds)]  # the gateway rows: medians
            rows.append(("gateways (readings/s)", medians[0], medians[1], statistics.median(ratios)))
            rows.append(("  whole busy window", medians[2], medians[3], statistics.median(whole_ratios)))
    _write_rows(rows)
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
    parser.add_argument("--gateway-readings", type=int, default=150_000, help="backlog per gateway session")
    parser.add_argument("--rounds", type=int, default=3, help="gateway rounds (1 gateway, then 2, each round)")
    parser.add_argument("--quick", action="store_true",
                        help="20 k worker readings; 2 rounds of 30 k readings per gateway")
    parser.add_argument("--workers-only", action="store_true")
    parser.add_argument("--gateways-only", action="store_true")
    args = parser.parse_args()
    if args.quick:
        args.worker_readings, args.gateway_readings, args.rounds = 20_000, 30_000, 2
    asyncio.run(run(args))


if __name__ == "__main__":
    main()
