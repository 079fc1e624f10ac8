"""The default anomaly model's scores and state are the same bits on every CPU.

NumPy hands dot products (``@``, ``np.dot``, ``np.correlate``) to OpenBLAS,
which picks its kernel for the CPU it runs on (``OPENBLAS_CORETYPE`` forces
one), and its SIMD loops are chosen the same way (``NPY_DISABLE_CPU_FEATURES``
turns them off). The shape vote's dot products once went through BLAS, so a
score's last bits, and through them a snapshot, depended on the host: a
fixture written on one machine failed on another, and a sensor restored on
another worker went on with different floats. Each run below is a separate
process with another kernel or fewer SIMD features, fed the same series.
"""

from __future__ import annotations

import os
import platform
import subprocess
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent

RUN = """
import hashlib, json
from bench.bench_state_bytes import signal
from detectors.catalog import make_detector
det = make_detector()
for kind, n in (("period_noise", 4000), ("periodic", 3000), ("spikes", 3500)):
    scores = [det.score_learn_one({"value": v}) for v in signal(kind, n, seed=3)]
    print(kind, hashlib.sha256(json.dumps(scores).encode()).hexdigest(),
          hashlib.sha256(json.dumps(det.snapshot(), sort_keys=True).encode()).hexdigest())
"""


def machines() -> dict[str, dict[str, str]]:
    """Environments that make NumPy compute as on other CPUs, all runnable on this one."""
    from numpy._core._multiarray_umath import __cpu_baseline__, __cpu_dispatch__, __cpu_features__

    dispatched = [f for f in __cpu_dispatch__ if __cpu_features__.get(f) and f not in __cpu_baseline__]
    runs: dict[str, dict[str, str]] = {"as it is": {}}
    if dispatched:
        runs["baseline SIMD only"] = {"NPY_DISABLE_CPU_FEATURES": " ".join(dispatched)}
    if platform.machine() in ("x86_64", "AMD64"):  # kernels every x86-64 CPU can run
        runs["OpenBLAS Prescott"] = {"OPENBLAS_CORETYPE": "Prescott"}
        runs["OpenBLAS Sandybridge"] = {"OPENBLAS_CORETYPE": "Sandybridge"}
    return runs


def test_scores_and_snapshots_are_the_same_bits_whatever_the_cpu_kernels():
    runs = machines()
    out = {}
    for name, env in runs.items():
        done = subprocess.run([sys.executable, "-c", RUN], cwd=ROOT, capture_output=True, text=True, timeout=300,
                              env={**os.environ, "PYTHONPATH": str(ROOT), **env})
        assert done.returncode == 0, (name, done.stderr[-2000:])
        out[name] = done.stdout
    assert len(runs) >= 2 and out["as it is"].count("\n") == 3
    assert all(text == out["as it is"] for text in out.values()), out


def test_the_dot_products_equal_blas_within_rounding():
    from detectors._shape_numbers import _row_dots, _windows

    rng = np.random.default_rng(0)
    x, q = rng.standard_normal(300), rng.standard_normal(32)
    assert np.allclose(_row_dots(_windows(x, 32), q), np.correlate(x, q, "valid"), rtol=1e-12, atol=1e-12)
    m = rng.standard_normal((64, 32)).astype(np.float32)
    v = q.astype(np.float32)
    assert _row_dots(m, v).dtype == np.float32
    assert np.allclose(_row_dots(m, v), m @ v, rtol=1e-5, atol=1e-5)
