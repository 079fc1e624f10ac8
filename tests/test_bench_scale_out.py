"""bench/bench_scale_out.py's pure parts: windows, child reports, CPU figures, the 2-core bound, ratios."""

from __future__ import annotations

import asyncio
import json
import os
import sys
import time
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "bench"))

from processes import MACHINE, CpuTrace, Usage, busy_seconds, core_bound, ratio_summary, wait_share  # noqa: E402
from scale_out_group import (GroupRun, count_at, overlap_window, parse_report,  # noqa: E402
                             progress_window)


def test_count_at_interpolates_between_samples_and_holds_outside_them():
    history = [(10.0, 100), (12.0, 300), (13.0, 400)]
    assert count_at(history, 9.0) == 0.0  # before its first reading
    assert count_at(history, 11.0) == 200.0
    assert count_at(history, 12.5) == 350.0
    assert count_at(history, 12.0) == 300.0
    assert count_at(history, 20.0) == 400.0


def test_progress_window_opens_at_ten_percent_once_every_process_and_the_backlog_are_there():
    # one process counts from t=0 at 100/s, the other joins at t=5: 10 % of 2,000 is reached at t=2 by
    # the first alone, so the window opens only at t=5 (both at work), and closes at 90 % (1,800)
    early = [(float(t), 100 * t) for t in range(1, 13)]
    late = [(float(t), 100 * (t - 4)) for t in range(5, 15)]
    assert progress_window([early, late], 2000) == (5.0, 11.0)  # 1,100 + 700 = 1,800 at t=11
    # the backlog written only at t=6: the window opens there
    assert progress_window([early, late], 2000, not_before=6.0)[0] == 6.0
    with pytest.raises(RuntimeError, match="no measuring window"):
        progress_window([early], 5000)  # never reaches 90 %


def test_overlap_window_is_while_every_process_forwarded():
    assert overlap_window([[(1.0, 5), (4.0, 50)], [(2.0, 5), (6.0, 80)]]) == (2.0, 4.0)
    with pytest.raises(RuntimeError):
        overlap_window([[(1.0, 5), (2.0, 50)], [(3.0, 5), (6.0, 80)]])


def test_a_child_report_line_parses_back_with_its_history_and_figures():
    line = "report " + json.dumps({"history": [[1.25, 10], [1.5, 30]], "partitions": 6, "batches": 4})
    report = parse_report(line.encode())
    assert report == {"history": [(1.25, 10), (1.5, 30)], "partitions": 6, "batches": 4}
    assert parse_report(b"12.3456 100\n") is None  # a progress line


def test_busy_seconds_counts_everything_but_idle_and_io_wait():
    text = "cpu  200 10 100 5000 300 6 4 2 7 0\ncpu0 100 5 50 2500 150 3 2 1 0 0\nintr 1"
    assert busy_seconds(text, ticks_per_second=100) == pytest.approx(3.22)
    with pytest.raises(ValueError):
        busy_seconds("cpu0 1 2 3 4 5 6 7 8", ticks_per_second=100)


def test_core_bound_gives_each_process_at_most_a_core_of_what_the_others_left():
    assert core_bound(20e-6, others_cores=0.5, cores=2) == pytest.approx(75_000)
    assert core_bound(20e-6, others_cores=0.0, cores=8) == pytest.approx(100_000)  # 2 processes, 2 cores
    assert core_bound(20e-6, others_cores=2.5, cores=2) == 0.0
    assert core_bound(20e-6, others_cores=0.0, processes=1, cores=2) == pytest.approx(50_000)


def test_ratio_summary_gives_each_round_its_ratio_and_the_median_and_range():
    ratios, median, low, high = ratio_summary([(10_000, 19_000), (12_000, 18_000), (9_000, 18_000)])
    assert ratios == pytest.approx([1.9, 1.5, 2.0])
    assert (median, low, high) == pytest.approx((1.9, 1.5, 2.0))


def test_wait_share_of_runnable_time():
    assert wait_share(Usage(1.0, on_cpu=3.0, waiting=1.0)) == 0.25
    assert wait_share(Usage(0.0)) == 0.0


def test_a_group_run_says_its_rate_cost_per_reading_and_what_two_could_reach():
    run = GroupRun("worker", [{"history": [(0.0, 1), (10.0, 100_000)]}, {"history": [(1.0, 1), (10.0, 80_000)]}],
                   window=(2.0, 8.0), in_window=[60_000.0, 60_000.0],
                   usage={"worker-0": Usage(2.4), "worker-1": Usage(2.4), "tansu": Usage(0.6),
                          MACHINE: Usage(7.2)})
    assert run.rate == pytest.approx(20_000)
    assert run.busy_rate == pytest.approx(18_000)
    assert run.cpu_per_reading() == pytest.approx(40e-6)
    assert run.others_cores() == pytest.approx(0.4)  # (7.2 - 4.8) s over 6 s
    assert run.bound() == pytest.approx(core_bound(40e-6, 0.4))


def test_cpu_trace_sees_its_own_process_spin_and_the_machine_at_least_as_busy():
    async def spin() -> tuple[dict, float, float]:
        trace = CpuTrace({"me": os.getpid()}, period=0.05)
        trace.start()
        await asyncio.sleep(0.1)
        start = time.monotonic()
        end = start + 0.5
        while time.monotonic() < end:
            pass
        await asyncio.sleep(0.1)  # a sample after the spin
        await trace.stop()
        return trace.usage(start, end), start, end

    used, start, end = asyncio.run(spin())
    me = used["me"]
    # runnable all 0.5 s: on a CPU or waiting for one (the samples are within 0.05 s of the window's ends)
    assert 0.35 <= me.on_cpu + me.waiting <= 0.7, me
    # utime + stime (10 ms ticks) agrees with the scheduler's own count; the machine was at least as busy
    assert abs(me.cpu - me.on_cpu) <= 0.03 + 0.1 * me.on_cpu, me
    assert used[MACHINE].cpu >= me.cpu - 0.03, used


def _run(rate: float, cpu_per_reading: float, processes: int) -> GroupRun:
    """A run of ``processes`` children over a 10 s window at ``rate`` readings/s, nothing else busy."""
    names = [f"worker-{i}" for i in range(processes)]
    each = rate * 10 / processes
    usage = {name: Usage(each * cpu_per_reading) for name in names}
    usage[MACHINE] = Usage(rate * 10 * cpu_per_reading)
    return GroupRun("worker", [{"history": [(0.0, 1), (10.0, int(each))]} for _ in names], (0.0, 10.0),
                    [each] * processes, usage)


def test_the_rounds_summary_gives_the_median_rates_and_ratio_and_the_cpu_bound_ratio(capsys):
    import bench_scale_out

    rounds = [(_run(10_000, 40e-6, 1), _run(18_000, 44e-6, 2)), (_run(12_000, 40e-6, 1), _run(12_000, 50e-6, 2)),
              (_run(8_000, 40e-6, 1), _run(16_000, 40e-6, 2))]
    assert bench_scale_out._cpu_bound_ratio(*rounds[1]) == pytest.approx(1.6)  # 2 x 40 / 50
    rows = bench_scale_out._summary("worker", rounds)
    assert rows == [("workers (readings/s)", 10_000, 16_000, pytest.approx(1.8))]  # ratios 1.8, 1.0, 2.0
    out = capsys.readouterr().out
    assert "ratio per round 1.80, 1.00, 2.00, median 1.80 (1.00-2.00)" in out
    assert "CPU-bound 1.82, 1.60, 2.00, median 1.82" in out
