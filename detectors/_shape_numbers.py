"""Number helpers of the shape vote (:mod:`detectors._shape`): held readings, finite values, a
variance with fewer calls, dot products that are the same bits on every CPU, and the reservoir's
seeded generator's jumps (a 64-bit LCG).

>>> import numpy as np
>>> _held_readings(np.array([1.0, np.inf, 3.0], dtype=np.float32)).tolist()
[1.0, 1.0, 3.0]
>>> _finite(float("nan")), _variance(np.array([1.0, 3.0]))
(0.0, 1.0)
>>> _row_dots(_windows(np.arange(5.0), 2), np.array([1.0, -1.0])).tolist()
[-1.0, -1.0, -1.0, -1.0]
"""

from __future__ import annotations

import math
from functools import lru_cache
from typing import Any

import numpy as np

from detectors.base import MODEL_VALUE_LIMIT

__all__ = ["_LCG_M", "_held_readings", "_finite", "_variance", "_row_dots", "_windows", "_lcg_jumps"]

_LCG_A, _LCG_C, _LCG_M = 6364136223846793005, 1442695040888963407, 2**64


def _held_readings(x: np.ndarray) -> np.ndarray:
    """``x`` with every reading not strictly within float32's range (inf, NaN: a buffer
    written before the guard) replaced by the reading before it, as :meth:`ShapeNovelty.learn`
    keeps them (0.0 where none is before)."""
    bad = ~(np.abs(x) < MODEL_VALUE_LIMIT)
    if not bad.any():
        return x
    before = np.where(bad, -1, np.arange(len(x)))
    np.maximum.accumulate(before, out=before)  # index of the last good reading so far
    return np.where(before >= 0, x[np.maximum(before, 0)], np.float32(0.0)).astype(np.float32)


def _finite(value: Any) -> float:
    """``value`` as a float, 0.0 if it is not finite (a record or score NaN made before the guard)."""
    value = float(value)
    return value if math.isfinite(value) else 0.0


def _variance(x: np.ndarray) -> float:
    """``x.var()`` of a 1-d float64 array, the same floats with fewer calls."""
    d = x - x.sum() / len(x)
    d *= d
    return float(d.sum() / len(x))


# Dot products go through np.einsum (numpy's own loops, without ``optimize``), never BLAS:
# np.dot, @ and np.correlate hand them to OpenBLAS, which picks its kernel for the CPU it runs
# on, so the last bits of a score depended on the machine (a fixture written on one host failed
# on another; a sensor restored on another worker went on with other floats).
# tests/test_score_determinism.py runs the model under other kernels and SIMD levels.


def _row_dots(m: np.ndarray, v: np.ndarray) -> np.ndarray:
    """``m @ v`` for a 2-d ``m`` (rows may overlap: a windows view), the same bits on every CPU."""
    return np.einsum("ij,j->i", m, v)


def _windows(x: np.ndarray, width: int) -> np.ndarray:
    """A read-only view of every ``width``-window of ``x`` (row ``i`` is ``x[i:i + width]``)."""
    return np.lib.stride_tricks.sliding_window_view(x, width)


@lru_cache(maxsize=4)
def _lcg_jumps(steps: int) -> tuple[np.ndarray, np.ndarray]:
    """``(A^j, C (A^(j-1) + ... + 1))`` modulo 2^64 for ``j = 1..steps`` (uint64)."""
    mul, add, a, c = [], [], 1, 0
    for _ in range(steps):
        a, c = (a * _LCG_A) % _LCG_M, (c * _LCG_A + _LCG_C) % _LCG_M
        mul.append(a)
        add.append(c)
    return np.array(mul, dtype=np.uint64), np.array(add, dtype=np.uint64)
