"""A process's resident memory and CPU time, read from ``/proc`` (Linux).

Used by the embedded supervisor (the broker rollover's RSS trigger) and by
``bench/bench_soak.py``.
"""

from __future__ import annotations

import os

__all__ = ["proc_sample", "rss_mib"]

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
