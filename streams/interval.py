"""A sensor's reporting interval, learnt from its readings when the registry does not state it.

The rules size their windows and holds by the sensor's interval (``"5
readings"``, a hold shorter than one interval means one reading, stale after
5 missed intervals). A registry entry without ``interval_s`` gets the 60 s
default at first; :class:`IntervalLearner` watches its first readings and
gives the median gap between them. When that differs from the interval in
use by more than a quarter, the engine rebuilds the sensor's checks with the
learnt interval (checks whose rule does not depend on it keep their state)
and records it in the sensor's snapshot.
"""

from __future__ import annotations

import statistics

__all__ = ["IntervalLearner", "LEARN_FROM_GAPS", "REBUILD_RATIO"]

#: gaps between readings the median is taken over
LEARN_FROM_GAPS = 8
#: the learnt interval replaces the one in use when they differ by more than this fraction
REBUILD_RATIO = 0.25


class IntervalLearner:
    """The median gap of a sensor's first readings.

    >>> learner = IntervalLearner()
    >>> [learner.observe(900.0 * i) for i in range(9)][-1]
    900.0
    >>> learner.observe(9000.0) is None          # decided once
    True
    """

    def __init__(self, gaps: int = LEARN_FROM_GAPS) -> None:
        self.gaps = gaps
        self._last: float | None = None
        self._seen: list[float] = []
        self.done = False

    def observe(self, t: float) -> float | None:
        """Feed a reading's time; returns the learnt interval once, when enough gaps were seen."""
        if self.done:
            return None
        if self._last is not None and t > self._last:
            self._seen.append(t - self._last)
        self._last = t if self._last is None else max(self._last, t)
        if len(self._seen) < self.gaps:
            return None
        self.done = True
        return float(round(statistics.median(self._seen)))

    @staticmethod
    def differs(learnt: float, in_use: float) -> bool:
        return abs(learnt - in_use) > REBUILD_RATIO * in_use
