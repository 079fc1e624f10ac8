"""A process's resident memory, CPU time and scheduler waits, read from ``/proc`` (Linux).

Used by the embedded supervisor (the broker rollover's RSS trigger) and by
``bench/bench_soak.py`` and ``bench/bench_scale_out.py`` (whether processes
wait for a CPU: :func:`sched_times`, :func:`sched_delta`).
"""

from __future__ import annotations

import os

__all__ = ["proc_sample", "rss_mib", "sched_times", "sched_delta"]

_TICKS = os.sysconf("SC_CLK_TCK")


def proc_sample(pid: int) -> tuple[float, float] | None:
    """``(RSS bytes, CPU seconds)`` of process ``pid``, or ``None`` once it is gone.

    Parameters
    ----------
    pid : int
        The process id.
    """
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        with open(f"/proc/{pid}/status") as f:
            rss = next(int(line.split()[1]) * 1024 for line in f if line.startswith("VmRSS:"))
    except (FileNotFoundError, ProcessLookupError, StopIteration):
        return None
    return float(rss), (int(fields[11]) + int(fields[12])) / _TICKS


def rss_mib(pid: int) -> float:
    """RSS of ``pid`` in MiB (0 when the process is gone)."""
    got = proc_sample(pid)
    return 0.0 if got is None else got[0] / 2**20


def sched_times(pid: int) -> dict[int, tuple[float, float]]:
    """Per thread of process ``pid``: ``(seconds on a CPU, seconds runnable but waiting for one)``, from
    ``/proc/<pid>/task/<tid>/schedstat`` (the kernel's scheduler statistics); ``{}`` once it is gone.

    Parameters
    ----------
    pid : int
        The process id.
    """
    out = {}
    try:
        tids = os.listdir(f"/proc/{pid}/task")
    except FileNotFoundError:
        return {}
    for tid in tids:
        try:
            with open(f"/proc/{pid}/task/{tid}/schedstat") as f:
                on_cpu, waiting = f.read().split()[:2]
        except (FileNotFoundError, ProcessLookupError):
            continue  # the thread ended meanwhile
        out[int(tid)] = (int(on_cpu) / 1e9, int(waiting) / 1e9)
    return out


def sched_delta(before: dict[int, tuple[float, float]], after: dict[int, tuple[float, float]]) -> tuple[float, float]:
    """``(seconds on a CPU, seconds waiting for one)`` of a process's threads between two :func:`sched_times`:
    a thread started meanwhile counts whole, a thread ended meanwhile is left out (its last stretch is unknown)."""
    on_cpu = waiting = 0.0
    for tid, (run_after, wait_after) in after.items():
        run_before, wait_before = before.get(tid, (0.0, 0.0))
        on_cpu += run_after - run_before
        waiting += wait_after - wait_before
    return on_cpu, waiting
