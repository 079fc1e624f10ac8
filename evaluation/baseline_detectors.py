"""The simple baselines of issue #11's hold-out table, for the offline suites only.

Issue #11 measured the default detector on a hidden hold-out beside two
simple methods; these are the same methods, so that the project's proxies
(``cityeye eval shapes``, ``--proxy``) print them beside the default:

* ``rolling_zscore`` (:class:`RollingZScore`): the distance of a reading to
  the mean of the last 100 readings, in their standard deviations;
* ``discord_lite`` (:class:`DiscordLite`): the distance of the window of the
  last 32 readings to the nearest earlier 32-reading window among the last
  512 plus a seeded reservoir of 512 older ones (z-normalised windows).

Both are score-then-learn :class:`~detectors.base.AnomalyDetector` s whose
score ``s / (1 + s)`` maps the raw statistic ``s`` monotonically into
``[0, 1)``. They are not in the product's catalog (``detectors.catalog``):
their state is unbounded in Python objects and their cost is not tuned.
"""

from __future__ import annotations

import math
import random
from collections import deque
from typing import Any

import numpy as np

from detectors.base import AnomalyDetector, model_value
from detectors.catalog import make_detector

__all__ = ["RollingZScore", "DiscordLite", "BASELINES", "make_any_detector"]


class RollingZScore(AnomalyDetector):
    """``|v - mean| / std`` over the last ``window`` readings (0 until it holds two).

    >>> det = RollingZScore(window=4)
    >>> for v in (1.0, 2.0, 1.0, 2.0):
    ...     det.learn_one({"value": v})
    >>> round(det.score_one({"value": 1.5}), 6), round(det.score_one({"value": 4.5}), 3)
    (0.0, 0.857)
    """

    def __init__(self, field: str = "value", window: int = 100) -> None:
        self.field, self.window = field, int(window)
        self._recent: deque[float] = deque(maxlen=self.window)

    def score_one(self, x: dict[str, float]) -> float:
        v = model_value(x, self.field)
        if v is None or len(self._recent) < 2:
            return 0.0
        mean = math.fsum(self._recent) / len(self._recent)
        std = math.sqrt(math.fsum((r - mean) ** 2 for r in self._recent) / len(self._recent))
        z = abs(v - mean) / std if std > 0 else 0.0
        return z / (1.0 + z)

    def learn_one(self, x: dict[str, float]) -> None:
        v = model_value(x, self.field)
        if v is not None:
            self._recent.append(v)


class DiscordLite(AnomalyDetector):
    """Nearest-neighbour distance of the latest window among recent and reservoir windows.

    Windows are z-normalised (a window's deviation is at least ``floor_share``
    times the recent readings' one, so a flat stretch's noise is not blown up
    into a shape). The windows compared with are the last ``recent`` windows
    that do not overlap the current one and ``reservoir`` older ones, a
    seeded uniform sample (reservoir sampling) of every window that left the
    recent ones. 0 until ``window + recent // 4`` readings are held.

    Examples
    --------
    A sine of period 40 whose cycle at reading 2000 is replaced by a square wave
    (the same range):

    >>> det = DiscordLite(window=16, recent=128, reservoir=64)
    >>> scores = []
    >>> for t in range(2200):
    ...     v = math.sin(2 * math.pi * t / 40)
    ...     if 2000 <= t < 2040:
    ...         v = 1.0 if (t // 10) % 2 else -1.0
    ...     scores.append(det.score_one({"value": v}))
    ...     det.learn_one({"value": v})
    >>> 1990 <= int(np.argmax(scores)) < 2056
    True
    """

    _SLACK = 256  # readings dropped from the buffer at a time

    def __init__(self, field: str = "value", window: int = 32, recent: int = 512, reservoir: int = 512,
                 floor_share: float = 0.05, seed: int = 0) -> None:
        self.field, self.window, self.recent = field, int(window), int(recent)
        self.reservoir, self.floor_share, self.seed = int(reservoir), float(floor_share), int(seed)
        # readings kept: the recent windows and the current window's but the newest
        self._keep = self.recent + 2 * self.window - 2
        self._buf = np.zeros(self._keep + self._SLACK)
        self._end = 0
        self._windows = np.lib.stride_tricks.sliding_window_view(self._buf, self.window)  # a view: follows _buf
        self._pool = np.zeros((self.reservoir, self.window))  # z-normalised reservoir windows
        self._pool_sq = np.zeros(self.reservoir)  # their squared norms
        self._offered = 0  # windows offered to it (the first min(_offered, reservoir) rows are filled)
        self._floor = 1e-12  # the deviation floor of the last score (the reservoir's windows take it)
        self._rng = random.Random(self.seed)

    def score_one(self, x: dict[str, float]) -> float:
        v = model_value(x, self.field)
        w, n = self.window, min(self._end, self._keep)
        if v is None or n < w + self.recent // 4:
            return 0.0
        past = self._buf[self._end - n:self._end]
        sums = np.cumsum(np.concatenate(([0.0], past)))
        sq = np.cumsum(np.concatenate(([0.0], past * past)))
        floor = self._floor = max(self.floor_share * math.sqrt(max(sq[n] / n - (sums[n] / n) ** 2, 0.0)), 1e-12)
        current = np.append(past[n - w + 1:], v)
        c = (current - current.mean()) / max(float(current.std()), floor)
        c_sq = float(c @ c)
        k = n - 2 * w + 2  # windows ending before the current one starts
        mean = (sums[w:w + k] - sums[:k]) / w
        var = np.maximum((sq[w:w + k] - sq[:k]) / w - mean * mean, 0.0)
        std = np.maximum(np.sqrt(var), floor)
        start = self._end - n
        dots = self._windows[start:start + k] @ c  # c sums to 0: the windows' means drop out
        d2 = w * var / (std * std) - 2.0 * dots / std + c_sq
        filled = min(self._offered, self.reservoir)
        if filled:
            d2 = np.concatenate((d2, self._pool_sq[:filled] - 2.0 * (self._pool[:filled] @ c) + c_sq))
        d = math.sqrt(max(float(d2.min()), 0.0))
        return d / (1.0 + d)

    def learn_one(self, x: dict[str, float]) -> None:
        v = model_value(x, self.field)
        if v is None:
            return
        if self._end == len(self._buf):  # the oldest windows leave the recent ones
            drop = self._SLACK
            for start in range(drop):
                self._offer(self._buf[start:start + self.window])
            self._buf[: self._end - drop] = self._buf[drop:self._end].copy()
            self._end -= drop
        self._buf[self._end] = v
        self._end += 1

    def _offer(self, window: np.ndarray) -> None:
        """Reservoir sampling (algorithm R) of the windows leaving the recent ones."""
        k = self._offered if self._offered < self.reservoir else self._rng.randrange(self._offered + 1)
        self._offered += 1
        if k < self.reservoir:
            z = (window - window.mean()) / max(float(window.std()), self._floor)
            self._pool[k], self._pool_sq[k] = z, float(z @ z)


#: name -> baseline class (the offline suites' extra detector names)
BASELINES: dict[str, type[AnomalyDetector]] = {"rolling_zscore": RollingZScore, "discord_lite": DiscordLite}


def make_any_detector(name: str, **params: Any) -> AnomalyDetector:
    """A baseline of :data:`BASELINES` or a detector of the product's catalog, by name."""
    if name in BASELINES:
        return BASELINES[name](**params)
    return make_detector(name, **params)
