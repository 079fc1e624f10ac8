"""launch/proc_usage.py: memory, CPU and scheduler figures of a process from /proc."""

from __future__ import annotations

import os
import subprocess
import sys
import time

from launch.proc_usage import proc_sample, sched_delta, sched_times


def test_sched_times_count_a_busy_process_time_on_a_cpu_and_waiting_for_one():
    spinner = subprocess.Popen([sys.executable, "-c", "import sys, time\nsys.stdin.readline()\n"
                                "end = time.perf_counter() + 0.4\nwhile time.perf_counter() < end: pass\n"],
                               stdin=subprocess.PIPE)
    try:
        time.sleep(0.3)
        before = sched_times(spinner.pid)
        assert spinner.pid in before  # its main thread
        spinner.stdin.write(b"go\n")
        spinner.stdin.flush()
        time.sleep(0.3)
        during = sched_times(spinner.pid)
    finally:
        spinner.stdin.close()
        spinner.wait(timeout=10)
    on_cpu, waiting = sched_delta(before, during)
    # runnable all 0.3 s (give or take the start): on a CPU, or waiting for one on a loaded machine
    assert 0.2 <= on_cpu + waiting <= 0.35, (on_cpu, waiting)
    assert sched_times(spinner.pid) == {}  # gone


def test_sched_delta_leaves_out_a_thread_that_ended():
    before = {1: (1.0, 0.5), 2: (3.0, 1.0)}
    after = {1: (1.5, 0.75), 3: (0.25, 0.125)}
    assert sched_delta(before, after) == (0.75, 0.375)


def test_proc_sample_gives_rss_and_cpu_seconds():
    rss, cpu = proc_sample(os.getpid())
    assert rss > 1e6 and cpu > 0
