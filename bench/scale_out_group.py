"""A group of worker or gateway processes draining a backlog, for ``bench_scale_out.py``.

:func:`run_group` starts one child process per configuration (this file, run
as ``--child-worker CONFIG`` or ``--child-gateway CONFIG``). A child prints
its count every 0.1 s (``<monotonic> <count>``), samples it every 50 ms and,
once its stdin closes (the parent is done), prints one ``report {json}`` line:
the count's history (a sample each time it had grown) and, for a worker, the
readings partitions it held, its processing batches (readings per batch),
the CPU its clock ticks took and its garbage collections. Meanwhile the
parent samples every child, the servers it is given, itself and the machine
(:class:`processes.CpuTrace`), so each process's CPU, schedstat waits and
readings are known over the group's timed window:

* ``progress``: from 10 % of the backlog (once every process has counted a
  reading and the backlog is written) to 90 % (start-up, a late group join
  and the last stragglers left out), from the merged histories;
* ``overlap``: while every process forwarded (from the latest first reading to
  the earliest last one): the steady state of the group without the
  processes' staggered start-up and the tail where one works alone.
"""

from __future__ import annotations

import asyncio
import bisect
import gc
import json
import os
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Awaitable, Callable

sys.path.insert(0, str(Path(__file__).resolve().parent))

from processes import MACHINE, CpuTrace, Usage, core_bound, wait_share  # noqa: E402

from cityeye.config import load_settings  # noqa: E402
from cityeye.sensor_registry import load_registry  # noqa: E402

__all__ = ["GroupRun", "run_group", "count_at", "progress_window", "overlap_window", "parse_report",
           "describe"]

History = list[tuple[float, int]]


# -- children: one stage process each ----------------------------------------------------------------

class _WorkerProbe:
    """Counts a worker's processing batches, the thread CPU of its clock ticks and its garbage collections
    (wrapping the runtime's ``process_events`` and ``tick``, which the agent and the timer look up per call)."""

    def __init__(self, runtime: Any) -> None:
        self.batches = self.records = self.ticks = self.collections = self.full_collections = 0
        self.tick_s = self.gc_s = 0.0
        self._gc_started = 0.0
        process, tick = runtime.process_events, runtime.tick

        async def process_events(events: Any) -> None:
            self.batches += 1
            self.records += len(events)
            await process(events)

        async def timed_tick() -> None:
            started = time.thread_time()
            await tick()
            self.ticks += 1
            self.tick_s += time.thread_time() - started

        runtime.process_events, runtime.tick = process_events, timed_tick
        gc.callbacks.append(self._on_gc)

    def _on_gc(self, phase: str, info: dict) -> None:
        if phase == "start":
            self._gc_started = time.thread_time()  # CPU, not wall time: a collection may wait for a CPU too
        else:
            self.collections += 1
            self.full_collections += info["generation"] == 2
            self.gc_s += time.thread_time() - self._gc_started

    def figures(self) -> dict[str, float]:
        return {"batches": self.batches, "records": self.records, "ticks": self.ticks, "tick_s": self.tick_s,
                "collections": self.collections, "full_collections": self.full_collections, "gc_s": self.gc_s}


async def _child_worker(config: str) -> None:
    from streams.command import StreamsWorker

    settings = load_settings(config)
    worker = StreamsWorker(settings, registry=load_registry(settings.registry), dedicated_process=True)
    await worker.start()
    await worker.wait_ready(120)
    runtime = worker.streams.runtime
    probe = _WorkerProbe(runtime)
    history = await _follow_count(lambda: runtime.readings)
    readings_topics = runtime.topics.readings_names
    partitions = sum(1 for tp in worker.app.consumer.assignment() if tp.topic in readings_topics)
    print("report " + json.dumps({"history": history, "partitions": partitions, **probe.figures()}), flush=True)
    await worker.stop()


async def _child_gateway(config: str) -> None:
    from ingest.gateway import Gateway

    settings = load_settings(config)
    gateway = Gateway(settings, load_registry(settings.registry))
    await gateway.start()
    history = await _follow_count(lambda: gateway.stats()["accepted"])
    print("report " + json.dumps({"history": history}), flush=True)
    await gateway.stop()


async def _follow_count(count: Callable[[], int]) -> History:
    """Print ``<monotonic> <count>`` every 0.1 s until stdin closes; the count's history, a sample every
    50 ms at which it had grown (every 10 ms cost a process ~9 ms of CPU a second, charged to the figures)."""
    closed = asyncio.ensure_future(asyncio.to_thread(sys.stdin.read))
    samples: History = []
    printed = 0.0
    while not closed.done():
        now, n = time.monotonic(), count()
        if n and (not samples or n > samples[-1][1]):
            samples.append((round(now, 4), n))
        if now - printed >= 0.1:
            print(f"{now:.4f} {n}", flush=True)
            printed = now
        await asyncio.sleep(0.05)
    return samples


def parse_report(line: bytes | str) -> dict[str, Any] | None:
    """A child's ``report {json}`` line as a dict (its history as ``(time, count)`` tuples); None for any
    other line."""
    text = line.decode() if isinstance(line, bytes) else line
    if not text.startswith("report "):
        return None
    report = json.loads(text[len("report "):])
    report["history"] = [(float(t), int(n)) for t, n in report["history"]]
    return report


# -- windows -------------------------------------------------------------------------------------------

def count_at(history: History, at: float) -> float:
    """A child's count at ``at``, linear between its samples (0 before the first, the last after the last)."""
    if not history or at < history[0][0]:
        return 0.0
    i = bisect.bisect_right(history, (at, float("inf")))
    if i >= len(history):
        return float(history[-1][1])
    (t0, n0), (t1, n1) = history[i - 1], history[i]
    if t1 <= t0:
        return float(n1)
    return n0 + (n1 - n0) * (at - t0) / (t1 - t0)


def progress_window(histories: list[History], total: int, not_before: float = 0.0,
                    low: float = 0.1, high: float = 0.9) -> tuple[float, float]:
    """The instants the group's count reached ``low`` and ``high`` of ``total``, the start no earlier than
    every child's first reading and ``not_before`` (the backlog written); raises if there is no such window."""
    opens = max([not_before] + [h[0][0] for h in histories])
    times = sorted({t for h in histories for t, _ in h if t >= opens} | {opens})
    start = end = None
    for t in times:
        done = sum(count_at(h, t) for h in histories)
        if start is None and done >= low * total:
            start = t
        if start is not None and done >= high * total:
            end = t
            break
    if start is None or end is None or end <= start:
        raise RuntimeError("no measuring window (the group started work too late or never reached "
                           f"{high:.0%}): use a larger backlog")
    return start, end


def overlap_window(histories: list[History]) -> tuple[float, float]:
    """While every child forwarded: from the latest first sample to the earliest last one."""
    start, end = max(h[0][0] for h in histories), min(h[-1][0] for h in histories)
    if end <= start:
        raise RuntimeError("the processes never forwarded at the same time; use a larger backlog")
    return start, end


# -- the parent -----------------------------------------------------------------------------------------

@dataclass
class GroupRun:
    """One group's drain: per child its report and readings in the window, everyone's CPU over the window."""

    role: str
    reports: list[dict[str, Any]]
    window: tuple[float, float]
    #: readings each child processed in the window
    in_window: list[float]
    #: CPU over the window per name: the children (``<role>-<i>``), the servers, the bench, the machine
    usage: dict[str, Usage] = field(default_factory=dict)

    @property
    def seconds(self) -> float:
        return self.window[1] - self.window[0]

    @property
    def rate(self) -> float:
        """Readings/s of the whole group over the window."""
        return sum(self.in_window) / self.seconds

    @property
    def busy_rate(self) -> float:
        """Readings/s over the whole busy window (first reading of any to last of any)."""
        hs = [r["history"] for r in self.reports]
        return sum(h[-1][1] for h in hs) / (max(h[-1][0] for h in hs) - min(h[0][0] for h in hs))

    def names(self) -> list[str]:
        return [f"{self.role}-{i}" for i in range(len(self.reports))]

    def cpu_per_reading(self) -> float:
        """The children's CPU seconds per reading over the window."""
        return sum(self.usage[n].cpu for n in self.names()) / sum(self.in_window)

    def others_cores(self) -> float:
        """Cores used on average over the window by everything but the children (brokers, bench, others)."""
        return (self.usage[MACHINE].cpu - sum(self.usage[n].cpu for n in self.names())) / self.seconds

    def bound(self, processes: int = 2) -> float:
        """Readings/s ``processes`` such children could reach on the cores the others left (processes.core_bound)."""
        return core_bound(self.cpu_per_reading(), self.others_cores(), processes)


async def run_group(role: str, configs: list[Path], total: int, *, window: str, servers: dict[str, int],
                    feed: Callable[[], Awaitable[None]] | None = None, timeout: float = 900.0) -> GroupRun:
    """Start one ``role`` child per config and wait until their counts add up to ``total``.

    ``feed``, if given, is awaited once every child reports (is ready) and the group had 3 s to settle: it
    writes the backlog (the ``progress`` window opens only once it is written). ``window``: ``progress`` or
    ``overlap`` (module docstring). ``servers``: other processes to sample, by name. A child runs in its
    config's directory (a worker writes its Faust data directory there).
    """
    procs = [await asyncio.create_subprocess_exec(
        sys.executable, str(Path(__file__).resolve()), f"--child-{role}", str(c), stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.DEVNULL, cwd=c.parent) for c in configs]
    names = [f"{role}-{i}" for i in range(len(procs))]
    trace = CpuTrace({**dict(zip(names, (p.pid for p in procs))), **servers, "bench": os.getpid()})
    counts = [0] * len(procs)
    reported = [False] * len(procs)
    reports: list[dict[str, Any] | None] = [None] * len(procs)
    deadline = time.monotonic() + timeout

    async def follow(i: int, proc: asyncio.subprocess.Process) -> None:
        while line := await proc.stdout.readline():
            if (report := parse_report(line)) is not None:
                reports[i] = report
                return
            try:
                counts[i] = int(line.split()[1])
            except (IndexError, ValueError):  # something else the child printed
                continue
            reported[i] = True

    followers = [asyncio.create_task(follow(i, p)) for i, p in enumerate(procs)]
    trace.start()
    fed_at = 0.0
    try:
        if feed is not None:
            while not all(reported):
                if time.monotonic() > deadline or any(f.done() for f in followers):
                    raise TimeoutError(f"{role}s did not all start")
                await asyncio.sleep(0.1)
            await asyncio.sleep(3.0)  # the group's rebalance after the last join
            await feed()
            fed_at = time.monotonic()
        while sum(counts) < total:
            if time.monotonic() > deadline or all(f.done() for f in followers):
                raise TimeoutError(f"{role}s processed {sum(counts)} of {total}")
            await asyncio.sleep(0.05)
    finally:
        for p in procs:
            p.stdin.close()
        try:  # the children print their report once stdin closes
            await asyncio.wait_for(asyncio.gather(*followers), 30)
        except asyncio.TimeoutError:
            for f in followers:
                f.cancel()
        await trace.stop()
        for p in procs:
            try:
                await asyncio.wait_for(p.wait(), 30)
            except asyncio.TimeoutError:
                p.kill()
    if not all(r and r["history"] for r in reports):
        raise RuntimeError(f"{role}s: a process reported nothing or processed nothing ({counts})")
    histories = [r["history"] for r in reports]
    span = progress_window(histories, total, fed_at) if window == "progress" else overlap_window(histories)
    in_window = [count_at(h, span[1]) - count_at(h, span[0]) for h in histories]
    return GroupRun(role, reports, span, in_window, trace.usage(*span))


def describe(run: GroupRun) -> str:
    """Lines on ``run``: per child its readings, CPU and waits over the window (a worker: partitions,
    batches, ticks, collections over its whole run), the other processes' CPU and the 2-core bound."""
    first = min(r["history"][0][0] for r in run.reports)
    lines = [f"  {len(run.reports)} {run.role}(s): {run.rate:,.0f} readings/s over {run.seconds:.2f} s "
             f"({run.window[0] - first:+.2f} .. {run.window[1] - first:+.2f} s after the first reading); "
             f"over the whole busy window {run.busy_rate:,.0f}/s"]
    for name, report, n in zip(run.names(), run.reports, run.in_window):
        use = run.usage.get(name, Usage(0.0))
        line = (f"    {name}: {report['history'][-1][1]:,} readings ({n:,.0f} in the window), CPU {use.cpu:.2f} s "
                f"({use.cpu / max(n, 1) * 1e6:.1f} us a reading), waiting for a CPU {use.waiting:.2f} s "
                f"({wait_share(use):.0%} of its runnable time)")
        if "partitions" in report:
            line += (f"; {report['partitions']} partitions, {report['batches']} batches "
                     f"({report['records'] / max(report['batches'], 1):.0f} records, "
                     f"{report['history'][-1][1] / max(report['batches'], 1):.0f} readings each), "
                     f"ticks {report['ticks']} ({report['tick_s']:.2f} s CPU), gc {report['collections']} "
                     f"({report['full_collections']} full, {report['gc_s']:.2f} s CPU)")
        lines.append(line)
    others = [f"{name} CPU {use.cpu:.2f} s, waiting {use.waiting:.2f} s" for name, use in run.usage.items()
              if name != MACHINE and name not in run.names()]
    lines.append("    meanwhile: " + "; ".join(others) + f"; everything but the {run.role}s "
                 f"{run.others_cores():.2f} cores")
    lines.append(f"    2-core bound: 2 {run.role}s at {run.cpu_per_reading() * 1e6:.1f} us a reading on the cores "
                 f"the rest left: {run.bound():,.0f} readings/s")
    return "\n".join(lines)


def _main() -> None:
    role, config = sys.argv[1], sys.argv[2]
    child = {"--child-worker": _child_worker, "--child-gateway": _child_gateway}[role]
    asyncio.run(child(config))


if __name__ == "__main__":
    _main()
