"""Soak: the embedded stack at 840 readings/s for minutes, every process's RSS and CPU, publish→alert latency.

With ``--rollover-every-min`` / ``--rollover-max-rss-mib`` the embedded
supervisor moves the stack to a fresh broker now and then
(launch/broker_rollover.py); processes are sampled by name, so a restarted
one keeps its column, and each rollover's steps and intake pause are printed.

Starts the embedded stack of ``cityeye run`` (launch.embedded: Tansu, Mosquitto,
InfluxDB when installed, the gateway, a worker, the sinks, the dispatcher) on
free ports, with the demo registry's sensors copied until the simulators
publish ``--rate`` readings/s at ``--speed`` (14 copies of the 6 demo sensors
at 600x: 840/s; scenario ``all``: floods, rainstorms, incidents), plus one
latency probe: a water-level gauge outside the simulation that publishes,
every ``--probe-every`` seconds, a level alternately above its historical
maximum and back to normal, so each reading raises or resolves an alert (a
rules file sets the probe's ``warning.min_duration_s`` to 0; it publishes with
its own device account). The
probe's latency is the time from its MQTT publish to its alert event on
``alerts.events``.

Every ``--sample-s`` seconds it reads each process's RSS and CPU time from
/proc; it prints a table per minute (RSS MiB and CPU % of one core per
process, probe latency p50/p99) and a verdict per process: the least-squares
slope of RSS over the run (after the first minute) and *flat* or *rising*
(rising: the fitted growth over the run is more than 10 % of its first RSS
and more than 20 MiB), and the same for the probe's median latency per minute
(rising: more than 50 % of the first minute's and 50 ms). Figures only: nothing here asserts.

    .venv/bin/python bench/bench_soak.py [--minutes 10] [--rate 840] [--rollover-every-min 3.5]
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import json
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from cityeye.contracts import AlertEvent, format_ts  # noqa: E402
from cityeye.device_credentials import read_credentials  # noqa: E402
from launch.broker_rollover import BrokerRollover, BrokerRolloverSettings  # noqa: E402
from launch.embedded import EmbeddedStack, follow_alerts  # noqa: E402
from launch.proc_usage import proc_sample  # noqa: E402
from simulators import DEMO_REGISTRY  # noqa: E402
from simulators.publisher import MqttPublisher  # noqa: E402

__all__ = ["main", "slope_per_minute", "verdict"]

PROBE = {"id": "probe-soak", "kind": "water_level", "district": "soak", "name": "latency probe", "lat": 31.2,
         "lon": 121.5, "interval_s": 600, "levels": {"warning_m": 4.5, "guaranteed_m": 5.2, "historical_max_m": 5.86}}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def write_registries(workdir: Path, rate: float, speed: float) -> tuple[Path, Path, Path, int]:
    """The simulated sensors (demo sensors copied to reach ``rate``), the full registry (with the probe) and
    the rules file that lets each probe reading change its alert."""
    demo = yaml.safe_load(DEMO_REGISTRY.read_text(encoding="utf-8"))["sensors"]
    per_copy = sum(speed / float(s.get("interval_s", 60)) for s in demo)
    copies = max(1, round(rate / per_copy))
    sensors = [dict(s, id=f"{s['id']}-{k:02d}") for k in range(copies) for s in demo]
    sim, full = workdir / "registry-sim.yaml", workdir / "registry.yaml"
    sim.write_text(yaml.safe_dump({"sensors": sensors}, allow_unicode=True), encoding="utf-8")
    full.write_text(yaml.safe_dump({"sensors": [*sensors, PROBE]}, allow_unicode=True), encoding="utf-8")
    rules = workdir / "rules.yaml"
    rules.write_text(yaml.safe_dump({"sensors": {PROBE["id"]: {"warning": {"min_duration_s": 0}}}}), encoding="utf-8")
    return sim, full, rules, round(copies * per_copy)


def cpu_percent(points: list[tuple[float, float, float, int]]) -> float:
    """CPU % of one core over ``(t, rss, cpu s, pid)`` samples, counting only intervals within one process."""
    busy = sum(b[2] - a[2] for a, b in zip(points, points[1:]) if a[3] == b[3])
    span = points[-1][0] - points[0][0] if len(points) > 1 else 0.0
    return 100.0 * busy / span if span > 0 else float("nan")


def slope_per_minute(points: list[tuple[float, float]]) -> float:
    """Least-squares slope of ``(seconds, value)`` points, per minute."""
    if len(points) < 2:
        return 0.0
    mt = statistics.fmean(p[0] for p in points)
    mv = statistics.fmean(p[1] for p in points)
    sxx = sum((p[0] - mt) ** 2 for p in points)
    return 0.0 if sxx == 0 else 60.0 * sum((p[0] - mt) * (p[1] - mv) for p in points) / sxx


def verdict(points: list[tuple[float, float]], rel: float, floor: float) -> tuple[float, str]:
    """Slope per minute and ``"flat"`` or ``"rising"`` (fitted growth over the run > rel × the first value and > floor).

    >>> verdict([(0.0, 100.0), (60.0, 101.0), (120.0, 102.0)], 0.10, 20.0)
    (1.0, 'flat')
    >>> verdict([(0.0, 20.0), (60.0, 40.0), (120.0, 60.0)], 0.5, 5.0)
    (20.0, 'rising')
    """
    s = slope_per_minute(points)
    span_min = (points[-1][0] - points[0][0]) / 60.0 if points else 0.0
    growth = s * span_min
    first = points[0][1] if points else 0.0
    return s, "rising" if growth > rel * first and growth > floor else "flat"


class Probe:
    """Publishes the probe's readings and matches them with their alert events."""

    def __init__(self, stack: EmbeddedStack, every_s: float) -> None:
        self.stack, self.every_s = stack, every_s
        self.sent: dict[float, float] = {}  # reading ts -> wall time of the publish
        self.latencies: list[tuple[float, float]] = []  # (wall time, seconds to a consumer reading the event)
        self.to_emit: list[float] = []  # seconds to the event's Kafka timestamp (when the worker sent it)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._publish, name="probe", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)

    def _publish(self) -> None:
        topic = f"cityeye/{PROBE['district']}/{PROBE['kind']}/{PROBE['id']}"
        password = read_credentials(self.stack.credentials_path).password(PROBE["id"])
        with MqttPublisher(self.stack.settings.mqtt, client_id="soak-probe", username=PROBE["id"],
                           password=password) as pub:
            high = True
            while not self._stop.wait(self.every_s):
                ts = round(time.time(), 3)
                payload = json.dumps({"ts": format_ts(ts), "values": {"level_m": 6.0 if high else 3.0}}).encode()
                self.sent[ts] = time.time()
                pub.publish(topic, payload)
                high = not high

    def take(self, batches) -> None:
        now = time.time()
        for records in batches.values():
            for record in records:
                if PROBE["id"].encode() not in record.value:
                    continue
                event = AlertEvent.from_json(record.value)
                if event.sensor_id != PROBE["id"] or event.rule != "water_level.warning":
                    continue
                sent = next((w for ts, w in self.sent.items() if abs(ts - event.updated_at) < 0.002), None)
                if sent is not None:
                    self.latencies.append((now, now - sent))
                    self.to_emit.append(record.timestamp / 1000.0 - sent)

    async def read_events(self, stop: asyncio.Event) -> None:
        """Match alert events with probe readings until ``stop``, following the stack across broker rollovers."""
        await follow_alerts(self.stack, self.take, stop, fetch_max_wait_ms=100)


def _processes(stack: EmbeddedStack, sim: subprocess.Popen) -> dict[str, int]:
    procs = {s.name: s.proc.pid for s in stack.servers if s.proc is not None}
    procs.update({name: p.pid for name, p in stack.procs.items()})
    procs["simulate"] = sim.pid
    return procs


def _pct(values: list[float], q: float) -> float:
    s = sorted(values)
    return s[min(len(s) - 1, int(q * len(s)))] if s else float("nan")


async def soak(stack: EmbeddedStack, sim: subprocess.Popen, args: argparse.Namespace) -> dict:
    procs = _processes(stack, sim)
    probe = Probe(stack, args.probe_every)
    stop = asyncio.Event()
    reader = asyncio.create_task(probe.read_events(stop))
    rollover = BrokerRollover(BrokerRolloverSettings(every_minutes=args.rollover_every_min,
                                                     max_rss_mib=args.rollover_max_rss_mib))
    supervisor = asyncio.create_task(rollover.supervise(stack, stop))
    probe.start()
    started = time.time()
    samples: dict[str, list[tuple[float, float, float, int]]] = {n: [] for n in procs}  # (t, rss, cpu s, pid)
    names = list(procs)
    print(f"{'min':>4s} " + " ".join(f"{n[:10]:>14s}" for n in names) + f"{'p50 ms':>9s}{'p99 ms':>9s}{'n':>5s}")
    print(f"{'':4s} " + " ".join(f"{'RSS MiB  CPU%':>14s}" for _ in names))
    minute = 1
    try:
        while time.time() - started < args.minutes * 60:
            await asyncio.sleep(args.sample_s)
            now = time.time()
            for name, pid in _processes(stack, sim).items():  # by name: a part restarted by a rollover keeps its column
                got = proc_sample(pid)
                if got is not None:
                    samples.setdefault(name, []).append((now - started, *got, pid))
            if now - started >= minute * 60:
                cells = []
                for name in names:
                    pts = [p for p in samples[name] if (minute - 1) * 60 <= p[0] <= minute * 60]
                    if len(pts) < 2:
                        cells.append(f"{'-':>14s}")
                        continue
                    cells.append(f"{pts[-1][1] / 2**20:8.0f} {cpu_percent(pts):5.0f}")
                lat = [ms for w, ms in probe.latencies if (minute - 1) * 60 <= w - started < minute * 60]
                print(f"{minute:4d} " + " ".join(cells) + f"{1000 * _pct(lat, 0.5):9.0f}{1000 * _pct(lat, 0.99):9.0f}"
                      f"{len(lat):5d}", flush=True)
                minute += 1
    finally:
        probe.stop()
        deadline = time.time() + 30.0  # the last probe readings' events, if a rollover delayed them
        while len(probe.latencies) < len(probe.sent) and time.time() < deadline and not reader.done():
            await asyncio.sleep(0.5)
        stop.set()
        await reader
        await supervisor
    return {"samples": samples, "latencies": [(w - started, s) for w, s in probe.latencies], "sent": len(probe.sent),
            "to_emit": probe.to_emit,  # a rollover's spike counts from its switch (the gateway's stop), after its
            # preparation (new broker, warm standby worker) during which everything runs on
            "rollovers": [(r.started + r.steps.get("gateway stop", 0.0) - started, r) for r in rollover.reports]}


def rollover_spike(latencies: list[tuple[float, float]], at: float, calm_s: float = 1.0) -> tuple[float, float, float]:
    """Around a rollover switching at ``at`` (run seconds): the worst probe latency of readings published from
    ``at`` on, how many seconds after ``at`` the first reading with a latency under ``calm_s`` was published
    (the stack caught up), and the median latency of the readings published before ``at`` in the minute before.
    """
    published = sorted((t - lat, lat) for t, lat in latencies)
    before = [lat for p, lat in published if at - 60.0 <= p < at]
    after = [(p, lat) for p, lat in published if p >= at]
    calm = next((p - at for p, lat in after if lat < calm_s and p - at > 1.0), float("nan"))
    return (max((lat for p, lat in after if p - at <= calm + 1.0), default=float("nan")), calm,
            statistics.median(before) if before else float("nan"))


def report(result: dict, minutes: float) -> None:
    for at, r in result["rollovers"]:
        worst, calm, before = rollover_spike(result["latencies"], at)
        print(f"rollover at {at / 60:.1f} min: {r.summary()}\n    probe: p50 {1000 * before:.0f} ms in the minute "
              f"before; worst {1000 * worst:.0f} ms; back under 1 s for readings published {calm:.0f} s after its start")
    catch_up = [(at, rollover_spike(result["latencies"], at)[1]) for at, _ in result["rollovers"]]
    lat_calm = [lat for t, lat in result["latencies"]  # a rollover never caught up (nan) keeps the rest of the run
                if not any(at <= t - lat and not (t - lat > at + calm) for at, calm in catch_up)]
    if result["rollovers"] and lat_calm:
        print(f"probe latency outside the rollovers' catch-up: p50 {1000 * _pct(lat_calm, 0.5):.0f} ms "
              f"p99 {1000 * _pct(lat_calm, 0.99):.0f} ms ({len(lat_calm)} readings)")
    print("\nverdict (after the first minute; RSS slope MiB/min, rising = growth over the run > 10 % of the first and > 20 MiB;"
          " CPU % of one core in the second and in the last minute)")
    end = max((pts[-1][0] for pts in result["samples"].values() if pts), default=0.0)
    for name, pts in result["samples"].items():
        later = [(t, rss / 2**20) for t, rss, _, _ in pts if t >= 60.0]
        if len(later) < 2:
            print(f"  {name:12s} too few samples")
            continue
        s, word = verdict(later, 0.10, 20.0)
        first = cpu_percent([p for p in pts if 60.0 <= p[0] <= 120.0])
        last = cpu_percent([p for p in pts if p[0] >= end - 60.0])
        print(f"  {name:12s} RSS {later[0][1]:7.0f} -> {later[-1][1]:7.0f} MiB (max {max(v for _, v in later):7.0f})  "
              f"slope {s:+7.2f} MiB/min  CPU {first:5.1f} -> {last:5.1f} %  {word}")
    per_min = {}
    for t, s in result["latencies"]:
        per_min.setdefault(int(t // 60), []).append(s)
    p50 = [(60.0 * m + 30.0, 1000 * statistics.median(v)) for m, v in sorted(per_min.items())
           if 1 <= m < int(minutes)]  # whole minutes only: not the end's wait for the last events
    if len(p50) >= 2:
        s, word = verdict(p50, 0.5, 50.0)
        allv = [s_ for t, s_ in result["latencies"]]
        print(f"  {'latency':12s} p50 per minute {p50[0][1]:.0f} -> {p50[-1][1]:.0f} ms  slope {s:+.1f} ms/min  "
              f"{word}; whole run p50 {1000 * _pct(allv, 0.5):.0f} ms p99 {1000 * _pct(allv, 0.99):.0f} ms "
              f"max {1000 * max(allv):.0f} ms ({len(allv)} of {result['sent']} probe readings seen)")
        emit = result["to_emit"]
        print(f"  {'':12s} publish -> the worker sending the event (its Kafka timestamp): p50 "
              f"{1000 * _pct(emit, 0.5):.0f} ms p99 {1000 * _pct(emit, 0.99):.0f} ms")
    else:
        print(f"  latency: too few probe events ({len(result['latencies'])} of {result['sent']})")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--minutes", type=float, default=10.0)
    ap.add_argument("--rate", type=float, default=840.0, help="readings/s the simulators publish")
    ap.add_argument("--speed", type=float, default=600.0, help="simulated seconds per real second")
    ap.add_argument("--sample-s", type=float, default=5.0)
    ap.add_argument("--probe-every", type=float, default=2.0)
    ap.add_argument("--workdir", default=None, help="default: a temporary directory")
    ap.add_argument("--no-influx", action="store_true")
    ap.add_argument("--rollover-every-min", type=float, default=0.0, help="broker rollover period (0: off)")
    ap.add_argument("--rollover-max-rss-mib", type=float, default=0.0, help="broker rollover RSS limit (0: off)")
    args = ap.parse_args(argv)
    workdir = Path(args.workdir or tempfile.mkdtemp(prefix="cityeye-soak-")).resolve()
    workdir.mkdir(parents=True, exist_ok=True)
    sim_registry, registry, rules, rate = write_registries(workdir, args.rate, args.speed)
    with open("/proc/loadavg") as f:
        load = " ".join(f.read().split()[:3])
    print(f"soak: {args.minutes:g} min at {rate} readings/s ({args.speed:g}x), rollover every "
          f"{args.rollover_every_min:g} min / above {args.rollover_max_rss_mib:g} MiB (0: off), "
          f"load average {load}, logs in {workdir}")
    stack = EmbeddedStack(workdir, with_influx=not args.no_influx, api_port=_free_port(),
                          extra_config={"registry": str(registry), "rules": str(rules)})
    sim = None
    try:
        stack.start_servers()
        stack.start_services()
        sim_config = workdir / "cityeye-sim.yaml"
        config = yaml.safe_load(stack.config_path.read_text())
        sim_config.write_text(yaml.safe_dump({**config, "registry": str(sim_registry)}, sort_keys=False))
        time.sleep(5.0)  # the worker joins its group (Tansu holds a join for half the session timeout)
        hours = args.minutes * 60.0 * args.speed / 3600.0 + 2.0
        logf = open(workdir / "simulate.log", "ab")
        sim = subprocess.Popen([sys.executable, "-m", "launch.cli", "simulate", "--config", str(sim_config),
                                "--speed", str(args.speed), "--scenario", "all", "--seed", "7",
                                "--duration-h", str(hours)], stdout=logf, stderr=subprocess.STDOUT,
                               stdin=subprocess.DEVNULL, start_new_session=True, cwd=Path(__file__).parent.parent)
        logf.close()
        deadline = time.monotonic() + 300.0  # the simulator computes its readings first, then publishes
        while "simulating " not in (workdir / "simulate.log").read_text(errors="replace"):
            if sim.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"the simulator did not start publishing; see {workdir / 'simulate.log'}")
            time.sleep(0.5)
        result = asyncio.run(soak(stack, sim, args))
        report(result, args.minutes)
        raw = {**result, "rollovers": [(at, dataclasses.asdict(r)) for at, r in result["rollovers"]]}
        (workdir / "soak-result.json").write_text(json.dumps(raw))
        with open("/proc/loadavg") as f:
            print(f"load average at the end: {' '.join(f.read().split()[:3])}")
        dead = stack.dead_parts()
        if dead:
            print(f"part(s) exited during the soak: {', '.join(dead)} (logs in {workdir})")
    finally:
        if sim is not None and sim.poll() is None:
            sim.terminate()
            sim.wait(timeout=15)
        stack.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
