"""A sensor's own score distribution, for a threshold set by an alert-rate budget.

An anomaly score of 0.9 means different things on a quiet sensor and on a
noisy one. :class:`ScoreQuantile` keeps a bounded histogram of a sensor's
scores (``bins`` equal bins over ``[0, 1]``, halved whenever it holds more
than ``horizon`` scores, so recent weeks weigh most and the counts stay
bounded) and gives the score exceeded by a share ``p`` of them: with ``p``
= budget / readings per week, a threshold at that quantile lets at most
about ``budget`` readings a week through on the sensor's usual data.

The counts are a flat ``array('d')`` and :meth:`ScoreQuantile.upper` adds
them up from the highest bin that ever held a score: the bins above it are
empty, and the budget's share is a few readings in ten thousand, so the
walk stops after a few bins (the same float sums, in the same order, as a
cumulative sum over every bin from the top).
"""

from __future__ import annotations

from array import array
from typing import Any

import numpy as np

from detectors._packed import pack, unpack

__all__ = ["ScoreQuantile"]


class ScoreQuantile:
    """Upper quantiles of the scores seen, from a bounded histogram.

    Parameters
    ----------
    bins
        Equal bins over ``[0, 1]`` (the quantile is a bin's upper edge).
    horizon
        When the histogram holds more than this many scores, every count is halved.

    Examples
    --------
    >>> q = ScoreQuantile(bins=100, horizon=10_000)
    >>> for i in range(1000):
    ...     q.add(0.3 if i % 100 else 0.95)
    >>> q.upper(0.05), q.upper(0.005)
    (0.31, 0.96)
    >>> ScoreQuantile().upper(0.01)  # nothing seen: no evidence, the top
    1.0
    """

    def __init__(self, bins: int = 100, horizon: float = 80_640.0) -> None:
        self.bins = int(bins)
        self.horizon = float(horizon)
        self._counts = array("d", bytes(8 * self.bins))
        self._total = 0.0
        self._top = -1  # at least the highest bin that holds a score (every bin above it is empty)

    def add(self, score: float) -> None:
        """Count one score (clipped to ``[0, 1]``)."""
        k = int(score * self.bins) if score < 1.0 else self.bins - 1
        if k < 0:
            k = 0
        self._counts[k] += 1.0
        if k > self._top:
            self._top = k
        self._total += 1.0
        if self._total > self.horizon:
            self._counts = array("d", [c * 0.5 for c in self._counts])
            self._total *= 0.5

    def upper(self, share: float) -> float:
        """The lowest bin edge that at most ``share`` of the scores reach or pass (1 before any score)."""
        if self._total <= 0.0:
            return 1.0
        allowed = share * self._total
        if allowed < 0.0:
            return 1.0
        counts, bins, top = self._counts, self.bins, self._top
        k = bins - 1 - top  # top bins within the budget: the empty ones above ``top`` are
        above = 0.0  # scores in the bins from the top down to i
        for i in range(top, -1, -1):
            above += counts[i]
            if above > allowed:
                break
            k += 1
        return round((bins - k) / bins, 10) if k < bins else 0.0

    @property
    def total(self) -> float:
        return self._total

    def snapshot(self) -> dict[str, Any]:
        return {"counts": pack(np.frombuffer(self._counts, dtype=np.float64).astype(np.float32)), "total": self._total}

    def restore(self, state: dict[str, Any] | None) -> None:
        if not state:
            self._counts = array("d", bytes(8 * self.bins))
            self._total, self._top = 0.0, -1
            return
        counts = unpack(state["counts"]).astype(np.float64)
        counts = counts[: self.bins] if len(counts) >= self.bins else np.pad(counts, (0, self.bins - len(counts)))
        self._counts = array("d", counts.tobytes())
        self._total = float(state["total"])
        nonzero = np.flatnonzero(counts)
        self._top = int(nonzero[-1]) if len(nonzero) else -1
