"""Reading -> alert latency through every stage: MQTT publish -> gateway -> worker -> alerts.events
-> dispatcher -> a local webhook receiver.

Starts Tansu and Mosquitto, then the gateway, a worker and the dispatcher as
``cityeye`` processes (as deployed), a webhook receiver in this process and
``--publishers`` paced publisher processes (default: one per 10,000
readings/s): ``--sensors`` water-level gauges (default 1,000), split between
the publishers, one reading per message, ``--rate`` readings/s in all
(default 5,000) for ``--seconds`` (default 60). A publisher stays at most
1,000 unacknowledged messages ahead of the broker, so a slow machine shows
as a lower achieved rate, not as readings queued in the publisher. Every
20th gauge crosses its warning level (4.50 m) and falls back every 10 s; the
others stay below it. A reading's ``ts`` is the wall time it was published
at, and an alert event's ``updated_at`` is the ``ts`` of the reading that
caused it, so each stage is a time minus ``ts``:

* publish -> gateway: the reading's ``received_at`` (the gateway's clock when
  the MQTT message arrived), from ``readings.water_level``, read back in one
  read once the pipeline has stopped (a live reader cost Tansu a fifth of its
  CPU: bench/latency_stages.py);
* publish -> Kafka: the readings record's timestamp (the gateway's producer
  stamps it when the record is handed over);
* publish -> alert event produced: the ``alerts.events`` record's timestamp
  (the worker's producer), and -> alert event read: when this process reads
  it (adds this reader's own fetch wait); events of clock ticks (the stale
  rule) left out, but the stale firings are counted: a gauge publishes
  throughout, so each is a false one (the worker's clocks ran ahead of late
  readings), unless the gauge's own readings (as published, read on
  ``readings.water_level``) have a gap of the stale limit there: a publisher
  starved of CPU, counted apart;
* alert event produced -> notification: the dispatcher's part alone (the
  router's hop, the dispatcher, delivery), without the worker's; matched by
  the latest alert's id and ``updated_at``;
* publish -> notification: the time the webhook receives a notification minus
  the latest ``updated_at`` of its alerts (route: ``group_wait: 0s``;
  ``timings.keep_firing_for: 0s``: with the default 60 s a gauge crossing
  every 10 s never resolves, each later crossing is a ``refired`` of the
  same alert, which is not notified, and the gauge soon counts as flapping,
  so only a gauge's first firing was notified, and not counted when it fell
  in ``--settle``: no notification at all in some 30-s runs).

``--settle`` leaves the first seconds of publishing out of the figures (the
worker writes every new gauge's first snapshot then: a startup burst).

The warning rule's hold is set to one reading (a rules file) so a crossing
alerts at once: the figure is the pipeline's latency, not the rule's hold.
Prints p50/p99/max per stage (and of the alert events read per rule), the
publishers' achieved rate, each process's CPU and its threads' waits for a CPU
while publishing, and the load average (the target: p99 <= 200 ms to the
alert event at 5 k readings/s).
Measured on a busy machine the figures say more about the machine than the
pipeline: compare with a baseline measured in the same minutes.

    .venv/bin/python bench/bench_latency.py
    .venv/bin/python bench/bench_latency.py --quick                # 20 s
    .venv/bin/python bench/bench_latency.py --quick --rate 1000    # what a slow gateway sustains
    .venv/bin/python bench/bench_latency.py --quick --stall-gateway 8 8  # a starved gateway (issue #10)
"""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any, Awaitable

import yaml
from aiohttp import web

from alerts.runtime.sharding import hop_fetch_wait_ms
from cityeye.config import KafkaSettings
from cityeye.consume import consume
from cityeye.contracts import TOPIC_ALERTS, readings_topic
from cityeye.kafka import ensure_topics, make_consumer
from launch.proc_usage import sched_delta, sched_times
from launch.servers import MosquittoServer, TansuServer, free_port
from latency_stages import (STAGES, StageTimes, end_offsets_of, first_reading, nearest_rank,  # bench/
                            percentiles, read_readings_back)
from paced_publishers import (CROSSING, HALF_PERIOD_S, RATE_PER_PUBLISHER, STALE_AFTER_S, WARNING_M,  # bench/
                              publish_paced, write_registry)

__all__ = ["main", "percentiles"]

REPO = Path(__file__).resolve().parent.parent


# -- the parent --------------------------------------------------------------------------------------


def _write(path: Path, data: dict) -> Path:
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


def _configs(tmp: Path, tansu: TansuServer, broker: MosquittoServer, hook_port: int, sensors: int) -> Path:
    registry = write_registry(tmp / "registry.yaml", sensors)
    rules = _write(tmp / "rules.yaml", {"kinds": {"water_level": {"warning": {"min_duration_s": "1 readings"}}}})
    _write(tmp / "alerting.yaml", {
        "receivers": [{"name": "bench-hook", "type": "webhook", "url": f"http://127.0.0.1:{hook_port}/hook"}],
        "route": {"receiver": "bench-hook", "group_by": ["sensor", "rule"], "group_wait": "0s",
                  "group_interval": "1s", "repeat_interval": "4h"},
        "timings": {"keep_firing_for": "0s"},
        "api": {"host": "127.0.0.1", "port": free_port(), "token": uuid.uuid4().hex}})
    return _write(tmp / "cityeye.yaml", {
        "kafka": {"bootstrap": tansu.bootstrap, "profile": "tansu", "consumer_group_prefix": f"lat{uuid.uuid4().hex[:6]}"},
        "mqtt": {"port": broker.port, "client_id": "bench-lat-gateway"},
        "influx": {"enabled": False}, "registry": str(registry), "rules": str(rules),
        "state_dir": str(tmp / "state")})


def _spawn(tmp: Path, config: Path, name: str, *extra: str) -> subprocess.Popen:
    log = open(tmp / f"{name}.log", "ab")
    return subprocess.Popen([sys.executable, "-m", "launch.cli", name, "--config", str(config), *extra],
                            stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, cwd=REPO)


#: the log line that says a service is at work
READY = {"gateway": "MQTT subscribed", "worker": "table recovered", "dispatcher": "dispatcher ready"}


async def _ready(tmp: Path, timeout: float) -> None:
    """Wait until every service logged that it is at work (a busy machine takes long to start them)."""
    deadline = time.monotonic() + timeout
    waiting = dict(READY)
    while waiting:
        waiting = {n: line for n, line in waiting.items() if line not in (tmp / f"{n}.log").read_text(errors="replace")}
        if time.monotonic() > deadline:
            raise TimeoutError(f"not ready within {timeout:.0f} s: {', '.join(waiting)}")
        await asyncio.sleep(0.2)


def _cpu_report(pids: dict[str, int], before: dict[str, dict], seconds: float) -> str:
    """Each process's CPU over the publishing window and its wait for one (``sched_times``), one line each."""
    lines = []
    for name, pid in pids.items():
        on_cpu, waiting = sched_delta(before[name], sched_times(pid))
        lines.append(f"  {name:12}: CPU {on_cpu:6.1f} s ({on_cpu / seconds:4.0%} of a core), "
                     f"waiting for a CPU {waiting:6.1f} s")
    return "\n".join(lines)


async def _stall(proc: subprocess.Popen, started: Awaitable[Any], at: float, seconds: float) -> None:
    """Stop ``proc`` (SIGSTOP) ``at`` seconds after ``started`` is done for ``seconds``: a gateway starved of
    CPU, as the rest of the pipeline sees it (the devices go on publishing; the broker queues their messages)."""
    await started
    await asyncio.sleep(at)
    proc.send_signal(signal.SIGSTOP)
    try:
        await asyncio.sleep(seconds)
    finally:
        proc.send_signal(signal.SIGCONT)


async def run(args: argparse.Namespace) -> None:
    stages = StageTimes(stale_after=STALE_AFTER_S)
    app = web.Application()
    app.router.add_post("/hook", stages.on_hook)
    runner = web.AppRunner(app)
    await runner.setup()
    hook_port = free_port()
    await web.TCPSite(runner, "127.0.0.1", hook_port).start()
    load0 = os.getloadavg()
    with tempfile.TemporaryDirectory(prefix="cityeye-latency-") as tmp_s, \
            TansuServer(workdir=Path(tmp_s) / "tansu") as tansu, MosquittoServer(workdir=Path(tmp_s) / "mqtt") as broker:
        tmp = Path(tmp_s)
        config = _configs(tmp, tansu, broker, hook_port, args.sensors)
        kafka = KafkaSettings(bootstrap=tansu.bootstrap, profile="tansu")
        await ensure_topics(kafka)
        procs = [_spawn(tmp, config, "gateway"), _spawn(tmp, config, "worker"),
                 _spawn(tmp, config, "dispatcher", "--alerting", str(tmp / "alerting.yaml"))]
        # the alert reader polls like a dispatcher hop: its own fetch wait is not the pipeline's latency
        alerts = make_consumer(kafka, TOPIC_ALERTS, group=None, auto_offset_reset="latest",
                               fetch_max_wait_ms=hop_fetch_wait_ms(kafka))
        await alerts.start()
        stop = asyncio.Event()
        reader: asyncio.Task | None = None
        try:
            await _ready(tmp, args.warmup)
            # the readings are read back once the pipeline has stopped, not live (latency_stages.py)
            readings_from = await end_offsets_of(kafka, readings_topic("water_level"))
            stages.started = time.time() + args.settle
            reader = asyncio.create_task(consume(alerts, stages.on_events, stop, timeout_ms=50, name="bench-alerts"))
            pids = {"tansu": tansu.proc.pid, "mosquitto": broker.proc.pid, "bench": os.getpid(),
                    **{name: proc.pid for name, proc in zip(("gateway", "worker", "dispatcher"), procs)}}
            cpu_before, publishing = {name: sched_times(pid) for name, pid in pids.items()}, time.monotonic()
            stall = (asyncio.create_task(_stall(procs[0], first_reading(kafka, readings_topic("water_level"),
                                                                        readings_from), *args.stall_gateway))
                     if args.stall_gateway else None)
            pubs = await publish_paced(broker.port, args.sensors, args.rate, args.seconds, args.publishers)
            if stall is not None:
                await stall
            cpu = _cpu_report(pids, cpu_before, time.monotonic() - publishing)
            await asyncio.sleep(args.drain)
        finally:
            stop.set()
            await asyncio.gather(*[reader] if reader else [], return_exceptions=True)
            await alerts.stop()
            for p in procs:
                p.terminate()
            for p in procs:
                try:
                    p.wait(timeout=30)
                except subprocess.TimeoutExpired:
                    p.kill()
            await runner.cleanup()
        await read_readings_back(kafka, readings_topic("water_level"), readings_from, stages)
        stages.match_dispatch()
        if not stages.times["event"]:  # say why
            for name in ("gateway", "worker", "dispatcher"):
                print(f"--- {name}.log (tail)\n" + "\n".join((tmp / f"{name}.log").read_text().splitlines()[-12:]))
    load1 = os.getloadavg()
    published = sum(p["published"] for p in pubs)
    rate = sum(p["published"] / p["seconds"] for p in pubs)
    print(f"gauges: {args.sensors}, every {CROSSING}th crossing {WARNING_M} m every {HALF_PERIOD_S:g} s; "
          f"target rate {args.rate:,.0f} readings/s for {args.seconds:g} s, {len(pubs)} publisher(s)"
          + (f", the first {args.settle:g} s left out" if args.settle else ""))
    print(f"publishers achieved             : {rate:10,.0f} readings/s ({published} readings)")
    for key, label in STAGES:
        print(f"{label:32}: {percentiles(stages.times[key])}")
    for rule, times in sorted(stages.read_by_rule.items()):
        print(f"  read, {rule:24}: {percentiles(times)}")
    print("CPU while publishing (publishers: " + ", ".join(f"{p['cpu']:.1f} s" for p in pubs) + ")\n" + cpu)
    in_data = stages.stale_in_the_data()
    print(f"stale (no-data) firings read    : {len(stages.stale):10,d} ({len(stages.stale) - in_data:,d} false: the "
          f"gauge's readings were late; {in_data:,d} where the gauge had published nothing for {STALE_AFTER_S:g} s: "
          f"its publisher was starved)")
    met = nearest_rank(stages.times["event_read"], 99) <= 0.2
    print(f"target p99 <= 200 ms to the alert event (read): {'met' if met else 'NOT met'}")
    print(f"load average: start {load0[0]:.2f} {load0[1]:.2f} {load0[2]:.2f}, end {load1[0]:.2f} {load1[1]:.2f} "
          f"{load1[2]:.2f} ({os.cpu_count()} cores)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sensors", type=int, default=1000)
    parser.add_argument("--rate", type=float, default=5000.0, help="readings/s in all (default: %(default)s)")
    parser.add_argument("--seconds", type=float, default=60.0)
    parser.add_argument("--publishers", type=int, default=0,
                        help=f"publisher processes (default: one per {RATE_PER_PUBLISHER:,.0f} readings/s)")
    parser.add_argument("--warmup", type=float, default=120.0, help="most seconds for the services to start")
    parser.add_argument("--settle", type=float, default=0.0,
                        help="seconds of publishing left out of the figures (every gauge's first reading makes "
                             "the worker write its first snapshot: a startup burst, not the steady state)")
    parser.add_argument("--drain", type=float, default=3.0, help="seconds to wait for the last events")
    parser.add_argument("--quick", action="store_true", help="20 s of publishing")
    parser.add_argument("--stall-gateway", type=float, nargs=2, metavar=("AT", "SECONDS"),
                        help="stop the gateway (SIGSTOP) AT s after the first reading reached Kafka for SECONDS s, "
                             "as a gateway starved "
                             "of CPU looks to the rest of the pipeline (the stale firings then show whether the "
                             "worker calls its sensors silent)")
    args = parser.parse_args()
    if args.quick:
        args.seconds = min(args.seconds, 20.0)
    asyncio.run(run(args))


if __name__ == "__main__":
    main()
