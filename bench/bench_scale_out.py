"""Scale-out: two workers against one, two gateways against one, same run, same brokers.

Each stage runs as separate processes (one core each at most), started as
children by ``bench/scale_out_group.py``, which also samples every process's
CPU and the machine's over the timed window (``bench/processes.py``). Both
stages run in ``--rounds`` (3): each round 1 process then 2, each run on a
fresh Tansu (it slows down with what it holds) with a group, state and
sessions of its own; each round's ratio and their median, beside the 2-core
bound (below).

* workers: a group of 1 worker process, then a group of 2, is started and,
  once every process is at work, a backlog of aggregated readings
  (bench_streams' sensors: water level, traffic, weather, default detectors;
  ``--worker-readings``, 240 k, so the timed window is several seconds) is
  written for it to drain. The figure is the rate from 10 % of the backlog
  (once every process counted a reading and the backlog is written) to 90 %
  (start-up, a late group join and the last stragglers left out).
* gateways: Mosquitto queues a backlog of QoS 1 readings for the persistent
  sessions of a shared-subscription group (``$share/<group>/<filter>``, MQTT
  5), of 1 gateway, then of 2 (Mosquitto spreads the messages round-robin
  over the group's sessions, also offline ones); the gateways are then
  started and drain their sessions into Kafka. Every session gets the same
  backlog, ``--gateway-readings`` per gateway (150 k; ``--quick``: 30 k):
  Mosquitto drains a long session queue more slowly than a short one, so
  splitting one backlog over two sessions flattered the pair (one 60 k queue
  drained at 36 k/s, two 30 k queues at 73 k/s each, same run). The backlog
  is queued before the gateways start (``bench/mqtt_backlog.py``). The figure
  is the readings all gateways forwarded together while every one of them
  was forwarding (from the latest first reading to the earliest last one),
  divided by that time; the rate over the whole busy window (first reading
  of any to last of any) is printed beside it. A run's group and sessions are
  removed once it is done (left subscribed, Mosquitto queued every later
  backlog for them too).

Per process, over the timed window: readings, CPU seconds (``utime + stime``)
and a reading's CPU, and the seconds its threads were runnable but waited
for a CPU (``/proc/<pid>/task/*/schedstat``); a worker also prints its
readings partitions, processing batches, clock ticks and garbage
collections (its whole run). The brokers', this bench's and everything
else's CPU (the machine's busy time from ``/proc/stat`` minus the
children's) are printed too, and from them the **2-core bound**: the
readings/s two such processes could reach on the cores the rest left them,
each at most one core, at the CPU a reading cost the pair; its ratio to one
process is printed beside the measured ratio. A measured ratio near the
bound says the machine is the limit (on a machine whose cores are all busy
the two are equal: the workers got what the rest left them), one far below
it the code. The **CPU-bound** ratio beside them, 2 x one process's CPU per
reading / the pair's, is what two would reach against one with a core each:
the code's own scaling, whatever the load.

Prints readings/s for 1 and 2 processes and the ratio (target >= 1.8 on this
2-core machine; the brokers share the cores). No assertions: figures only.

    .venv/bin/python bench/bench_scale_out.py               # 3 rounds each: 240 k worker readings, 150 k per gateway
    .venv/bin/python bench/bench_scale_out.py --quick       # 2 rounds each: 40 k worker readings, 30 k per gateway
    .venv/bin/python bench/bench_scale_out.py --workers-only --rounds 5
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_streams import make_readings, make_registry  # noqa: E402
from mqtt_backlog import end_sessions, preload  # noqa: E402
from processes import load_average, ratio_summary  # noqa: E402
from scale_out_group import GroupRun, describe, run_group  # noqa: E402

from cityeye.config import KafkaSettings, MqttSettings, Settings  # noqa: E402
from cityeye.contracts import all_topics, format_ts, mqtt_topic  # noqa: E402
from cityeye.kafka import ensure_topics, make_producer  # noqa: E402
from cityeye.sensor_registry import load_registry  # noqa: E402
from ingest.aggregation import build_records  # noqa: E402
from launch.servers import MosquittoServer, TansuServer  # noqa: E402

__all__ = ["main"]

GATEWAY_REGISTRY = Path(__file__).resolve().parent.parent / "simulators" / "demo_registry.yaml"

#: a record to produce: (topic, partition, key, value, headers)
Record = tuple[str, int | None, bytes | None, bytes, list | None]


def _write_config(path: Path, data: dict) -> Path:
    path.write_text(yaml.safe_dump(data))
    return path


# -- workers ---------------------------------------------------------------------------------------

def _worker_backlog(sensors: int, total: int) -> tuple[list[dict], list[Record]]:
    """The sensors' registry entries and the backlog's records as the gateway writes them (chunks of 500
    readings, aggregated per partition), built once for every run."""
    registry = make_registry(sensors)
    readings = make_readings(registry, total)
    records = [(rec.topic, rec.partition, rec.key, rec.value, rec.headers)
               for i in range(0, total, 500)
               for rec in build_records(readings[i:i + 500], all_topics().__getitem__, max_readings=500,
                                        max_bytes=256 * 1024)]
    return [s.model_dump(mode="json") for s in registry], records


async def _worker_run(tmp: Path, registry: Path, records: list[Record], total: int, n: int, tag: str) -> GroupRun:
    """A group of ``n`` workers on a fresh Tansu, with a state directory and group of its own, draining the
    backlog written once every worker is at work."""
    with TansuServer(workdir=tmp / f"tansu-{tag}") as tansu:
        kafka = KafkaSettings(bootstrap=tansu.bootstrap, profile="tansu")
        await ensure_topics(kafka)

        async def feed() -> None:
            producer = make_producer(kafka, "bench", linger_ms=20, max_batch_size=1024 * 1024)
            await producer.start()
            for topic, partition, key, value, headers in records:
                await producer.send(topic, value, key=key, partition=partition, headers=headers)
            await producer.flush()
            await producer.stop()

        conf = {"kafka": {"bootstrap": tansu.bootstrap, "profile": "tansu", "consumer_group_prefix": f"scale-{tag}"},
                "influx": {"enabled": False}, "registry": str(registry), "state_dir": str(tmp / f"state-{tag}")}
        configs = [_write_config(tmp / f"worker-{tag}-{i}.yaml", conf) for i in range(n)]
        return await run_group("worker", configs, total, window="progress", servers={"tansu": tansu.proc.pid},
                               feed=feed)


async def bench_workers(tmp: Path, sensors: int, total: int, rounds: int) -> list[tuple[GroupRun, GroupRun]]:
    """Per round, a group of 1 worker then of 2 draining the same backlog; prints each run and round."""
    entries, records = _worker_backlog(sensors, total)
    registry = _write_config(tmp / "registry.yaml", {"sensors": entries})
    out = []
    for r in range(1, rounds + 1):
        one, two = [await _worker_run(tmp, registry, records, total, n, f"{r}-{n}") for n in (1, 2)]
        _print_round("worker", r, one, two)
        out.append((one, two))
    return out


# -- gateways --------------------------------------------------------------------------------------

def _gateway_payloads(count: int) -> list[tuple[str, bytes]]:
    t0 = time.time() - count
    sensors = [("huangpu", "wl-huangpu-01"), ("minhang", "wl-minhang-01")]
    return [(mqtt_topic(d, "water_level", s), json.dumps({"ts": format_ts(t0 + i), "values": {
        "level_m": round(2.0 + (i % 500) / 1000, 3)}}, separators=(",", ":")).encode())
        for i, (d, s) in ((i, sensors[i % 2]) for i in range(count))]


async def _gateway_run(tmp: Path, broker: MosquittoServer, n: int, per_gateway: int, tag: str) -> GroupRun:
    """One run of ``n`` gateways on a fresh Tansu: their backlog queued, then drained. The run's group and
    sessions are its own, removed at its end (left subscribed, they had Mosquitto queue every later backlog
    too: docs/contracts.md, session 9)."""
    group = f"gw-{tag}"
    client_ids = [f"bench-{group}-{i}" for i in range(n)]
    try:
        return await _gateway_drain(tmp, broker, group, client_ids, per_gateway, tag)
    finally:
        await asyncio.to_thread(end_sessions, broker.port, client_ids)


async def _gateway_drain(tmp: Path, broker: MosquittoServer, group: str, client_ids: list[str], per_gateway: int,
                         tag: str) -> GroupRun:
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
        return await run_group("gateway", configs, total, window="overlap",
                               servers={"mosquitto": broker.proc.pid, "tansu": tansu.proc.pid})


async def bench_gateways(tmp: Path, per_gateway: int, rounds: int) -> list[tuple[GroupRun, GroupRun]]:
    """Per round, 1 gateway then 2, each session with ``per_gateway`` readings; prints each run and round."""
    out = []
    with MosquittoServer(workdir=tmp / "gw-mqtt") as broker:
        for r in range(1, rounds + 1):
            one, two = [await _gateway_run(tmp, broker, n, per_gateway, f"{r}-{n}") for n in (1, 2)]
            _print_round("gateway", r, one, two)
            out.append((one, two))
    return out


# -- figures ---------------------------------------------------------------------------------------

def _print_round(role: str, r: int, one: GroupRun, two: GroupRun) -> None:
    print(describe(one) + "\n" + describe(two))
    print(f"round {r}: 1 {role} {one.rate:,.0f}/s, 2 {role}s {two.rate:,.0f}/s, ratio {two.rate / one.rate:.2f} "
          f"(2-core bound {two.bound() / one.rate:.2f}, CPU-bound {_cpu_bound_ratio(one, two):.2f}; whole busy "
          f"window {two.busy_rate / one.busy_rate:.2f}); {load_average()}", flush=True)


def _cpu_bound_ratio(one: GroupRun, two: GroupRun) -> float:
    """The ratio if each process had a core of its own: 2 x one's CPU per reading / two's (the code's scaling,
    whatever the machine's load)."""
    return 2 * one.cpu_per_reading() / two.cpu_per_reading()


def _summary(role: str, rounds: list[tuple[GroupRun, GroupRun]]) -> list[tuple[str, float, float, float]]:
    """Prints the rounds' ratios and medians; the table's rows (medians) for ``role``."""
    ratios, median, low, high = ratio_summary([(one.rate, two.rate) for one, two in rounds])
    bounds, bound, bound_low, bound_high = ratio_summary([(one.rate, two.bound()) for one, two in rounds])
    busy, busy_median, _, _ = ratio_summary([(one.busy_rate, two.busy_rate) for one, two in rounds])
    cpu_bound = [_cpu_bound_ratio(one, two) for one, two in rounds]
    print(f"{role}s: ratio per round " + ", ".join(f"{x:.2f}" for x in ratios)
          + f", median {median:.2f} ({low:.2f}-{high:.2f}); 2-core bound " + ", ".join(f"{x:.2f}" for x in bounds)
          + f", median {bound:.2f} ({bound_low:.2f}-{bound_high:.2f}); CPU-bound "
          + ", ".join(f"{x:.2f}" for x in cpu_bound) + f", median {statistics.median(cpu_bound):.2f}; "
          + "whole busy window " + ", ".join(f"{x:.2f}" for x in busy) + f", median {busy_median:.2f}")
    for n, column in zip((1, 2), zip(*rounds)):
        costs = [run.cpu_per_reading() * 1e6 for run in column]
        print(f"  {n} {role}(s): CPU per reading " + ", ".join(f"{c:.1f}" for c in costs)
              + f" us, median {statistics.median(costs):.1f}")
    rates = [statistics.median(run.rate for run in column) for column in zip(*rounds)]
    return [(f"{role}s (readings/s)", rates[0], rates[1], median)]


def _write_rows(rows: list[tuple[str, float, float, float]]) -> None:
    print(f"{'stage (medians)':<24}{'1 process':>12}{'2 processes':>14}{'ratio':>8}   target >= 1.8")
    for name, one, two, ratio in rows:
        print(f"{name:<24}{one:>12,.0f}{two:>14,.0f}{ratio:>8.2f}   {'met' if ratio >= 1.8 else 'NOT met'}")


async def run(args: argparse.Namespace) -> None:
    print(f"at start: {load_average()}")
    with tempfile.TemporaryDirectory(prefix="cityeye-scale-") as tmp:
        rows = []
        if not args.gateways_only:
            print(f"workers: {args.worker_readings} readings from {args.sensors} sensors, default detectors, "
                  f"{args.rounds} round(s)")
            rows += _summary("worker", await bench_workers(Path(tmp), args.sensors, args.worker_readings,
                                                           args.rounds))
        if not args.workers_only:
            print(f"gateways: {args.gateway_readings} QoS 1 readings per gateway session, MQTT 5 shared subscription, "
                  f"{args.rounds} round(s)")
            rows += _summary("gateway", await bench_gateways(Path(tmp), args.gateway_readings, args.rounds))
    _write_rows(rows)
    print(f"at end: {load_average()}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sensors", type=int, default=300)
    parser.add_argument("--worker-readings", type=int, default=240_000)
    parser.add_argument("--gateway-readings", type=int, default=150_000, help="backlog per gateway session")
    parser.add_argument("--rounds", type=int, default=3, help="rounds of 1 process, then 2, for each stage")
    parser.add_argument("--quick", action="store_true",
                        help="2 rounds: 40 k worker readings, 30 k readings per gateway")
    parser.add_argument("--workers-only", action="store_true")
    parser.add_argument("--gateways-only", action="store_true")
    args = parser.parse_args()
    if args.quick:
        args.worker_readings, args.gateway_readings, args.rounds = 40_000, 30_000, 2
    asyncio.run(run(args))


if __name__ == "__main__":
    main()
