"""bench/bench_checks.py runs: every kind's checks, and the water-level forecast's Theil-Sen refit baseline.

The baseline subclasses the forecast; when the forecast's ``_estimate`` took a
new argument the bench stopped with a TypeError and nobody saw it.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_the_checks_bench_prints_every_kind_and_the_refit_baseline():
    done = subprocess.run([sys.executable, "bench/bench_checks.py", "--readings", "600"], cwd=ROOT,
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    rows = {line.split()[0]: line.split()[1:] for line in done.stdout.splitlines() if line.split()}
    for kind in ("water_level", "traffic", "weather"):
        assert kind in rows and float(rows[kind][0]) > 0, done.stdout
    assert float(rows["water_level"][3]) > 0, done.stdout  # the refit baseline's column
