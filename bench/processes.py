"""What the benches' processes and the machine used of the CPUs, sampled from ``/proc`` (Linux).

:class:`CpuTrace` samples, every ``period`` seconds in a background task,
each named process's CPU seconds (``utime + stime`` of ``/proc/<pid>/stat``),
its threads' scheduler statistics (seconds on a CPU and runnable but waiting
for one, ``/proc/<pid>/task/*/schedstat``) and the whole machine's busy CPU
seconds (``/proc/stat``); :meth:`CpuTrace.usage` gives what each used between
two instants, from the samples nearest them. With the machine's figure the
CPU of everything else (the brokers, the bench's own process, other people's
jobs) is known too, and with it what two processes could reach at most on
this machine (:func:`core_bound`): a ratio of two processes to one far below
that bound is the code's; one near it, the machine's.

    trace = CpuTrace({"worker-0": pid0, "tansu": tansu_pid})
    trace.start()
    ...
    used = trace.usage(t0, t1)      # {"worker-0": Usage(...), ..., MACHINE: Usage(busy, 0, 0)}
    await trace.stop()
"""

from __future__ import annotations

import asyncio
import bisect
import os
import statistics
import time
from dataclasses import dataclass

from launch.proc_usage import proc_sample, sched_delta, sched_times

__all__ = ["MACHINE", "Usage", "CpuTrace", "busy_seconds", "core_bound", "ratio_summary", "load_average",
           "wait_share"]

#: the name under which :meth:`CpuTrace.usage` reports the whole machine's busy CPU seconds
MACHINE = "machine"

_TICKS = os.sysconf("SC_CLK_TCK")


@dataclass(frozen=True)
class Usage:
    """One process's use of the CPUs over a stretch of time.

    Attributes
    ----------
    cpu : float
        CPU seconds, user and system (``utime + stime``).
    on_cpu : float
        Seconds its threads ran on a CPU (schedstat).
    waiting : float
        Seconds its threads were runnable but waited for a CPU (schedstat).
    """

    cpu: float
    on_cpu: float = 0.0
    waiting: float = 0.0


def wait_share(usage: Usage) -> float:
    """The share of its runnable time ``usage``'s process spent waiting for a CPU (0 when it never ran)."""
    runnable = usage.on_cpu + usage.waiting
    return usage.waiting / runnable if runnable > 0 else 0.0


def busy_seconds(proc_stat: str, ticks_per_second: float = _TICKS) -> float:
    """The CPU seconds all cores spent busy (not idle, not waiting for I/O) since boot, from ``/proc/stat``.

    Parameters
    ----------
    proc_stat : str
        The text of ``/proc/stat`` (its first line, ``cpu  user nice system idle iowait irq softirq
        steal guest guest_nice``, in clock ticks; guest time is counted in user time already).
    ticks_per_second : float
        Clock ticks a second (``SC_CLK_TCK``).

    Examples
    --------
    >>> busy_seconds("cpu  100 5 50 900 20 3 2 0 0 0\\ncpu0 1 2 3 4", ticks_per_second=100)
    1.6
    """
    fields = proc_stat.split("\n", 1)[0].split()
    if fields[0] != "cpu":
        raise ValueError(f"not /proc/stat's total line: {fields[0]!r}")
    user, nice, system, _idle, _iowait, irq, softirq, steal = (int(v) for v in fields[1:9])
    return (user + nice + system + irq + softirq + steal) / ticks_per_second


def _machine_busy() -> float:
    with open("/proc/stat") as f:
        return busy_seconds(f.read())


#: one sample: (monotonic time, machine busy seconds, per name (CPU seconds, per-thread schedstat))
_Sample = tuple[float, float, dict[str, tuple[float, dict[int, tuple[float, float]]]]]


class CpuTrace:
    """Samples named processes and the machine every ``period`` seconds (see the module docstring).

    Parameters
    ----------
    pids : dict[str, int]
        The processes to follow, by the name to report them under.
    period : float
        Seconds between samples.
    """

    def __init__(self, pids: dict[str, int], period: float = 0.1) -> None:
        self.pids = dict(pids)
        self.period = period
        self.samples: list[_Sample] = []
        self._task: asyncio.Task | None = None

    def sample(self) -> None:
        """Take a sample now (a process that is gone is left out of it)."""
        now, busy = time.monotonic(), _machine_busy()
        procs = {}
        for name, pid in self.pids.items():
            got = proc_sample(pid)
            if got is not None:
                procs[name] = (got[1], sched_times(pid))
        self.samples.append((now, busy, procs))

    def start(self) -> None:
        """Sample now and then every ``period`` seconds, in a task of the running loop, until :meth:`stop`."""
        self.sample()
        self._task = asyncio.ensure_future(self._run())

    async def _run(self) -> None:
        while True:
            await asyncio.sleep(self.period)
            self.sample()

    async def stop(self) -> None:
        """Stop sampling (after one last sample)."""
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
            self._task = None
        self.sample()

    def usage(self, start: float, end: float) -> dict[str, Usage]:
        """What each process (and :data:`MACHINE`: its busy seconds as ``cpu``) used from ``start`` to ``end``
        (monotonic times), between the samples nearest them; a process missing from either sample is left out."""
        first, last = _nearest(self.samples, start), _nearest(self.samples, end)
        out = {MACHINE: Usage(last[1] - first[1])}
        for name, (cpu, sched) in last[2].items():
            if name in first[2]:
                cpu0, sched0 = first[2][name]
                out[name] = Usage(cpu - cpu0, *sched_delta(sched0, sched))
        return out


def _nearest(samples: list[_Sample], at: float) -> _Sample:
    """The sample taken nearest to ``at`` (samples in time order)."""
    if not samples:
        raise ValueError("no samples taken")
    i = bisect.bisect_left([s[0] for s in samples], at)
    around = samples[max(0, i - 1):i + 1]
    return min(around, key=lambda s: abs(s[0] - at))


def core_bound(cpu_per_reading: float, others_cores: float, processes: int = 2,
               cores: int | None = None) -> float:
    """Readings/s that ``processes`` processes could reach at most, each at most one core, on the cores the
    other processes left them.

    Parameters
    ----------
    cpu_per_reading : float
        CPU seconds a reading costs one of the processes.
    others_cores : float
        Cores the other processes used meanwhile on average (their CPU seconds over the stretch's length).
    processes : int
        How many processes share the work.
    cores : int, optional
        The machine's cores (default: ``os.cpu_count()``).

    Examples
    --------
    >>> core_bound(25e-6, 0.5, cores=2)  # 1.5 cores left, 25 us a reading
    60000.0
    >>> core_bound(25e-6, 0.0, cores=4)  # two processes use two cores at most
    80000.0
    """
    if cores is None:
        cores = os.cpu_count() or 1
    left = max(0.0, min(float(processes), cores - others_cores))
    return left / cpu_per_reading


def ratio_summary(pairs: list[tuple[float, float]]) -> tuple[list[float], float, float, float]:
    """Per round ``(one, two)`` rates: each round's ratio two / one, their median, lowest and highest.

    Examples
    --------
    >>> ratio_summary([(10.0, 19.0), (10.0, 15.0), (8.0, 16.0)])
    ([1.9, 1.5, 2.0], 1.9, 1.5, 2.0)
    """
    ratios = [two / one for one, two in pairs]
    return ratios, statistics.median(ratios), min(ratios), max(ratios)


def load_average() -> str:
    """The load averages over 1, 5 and 15 minutes and the cores, e.g. ``load average 3.12 2.80 2.01 (2 cores)``."""
    one, five, fifteen = os.getloadavg()
    return f"load average {one:.2f} {five:.2f} {fifteen:.2f} ({os.cpu_count()} cores)"
