"""What the simulators share: the clock, seeded randomness, the city's rainstorm, labels.

Everything here is pure and deterministic: the same seed, start and
duration give the same numbers on every machine (``random.Random`` seeded
with a string hashes it with SHA-512, independent of ``PYTHONHASHSEED``).
"""

from __future__ import annotations

import math
import random
from collections.abc import Sequence
from dataclasses import dataclass

from cityeye.contracts import format_ts, mqtt_topic

__all__ = [
    "SCENARIOS",
    "LOCAL_UTC_OFFSET_H",
    "SimReading",
    "Label",
    "Clock",
    "Storm",
    "rng_for",
    "storm_for",
    "showers_for",
    "local_hour",
    "episodes",
    "trailing_sums",
    "TippingBucket",
]

#: ``normal``: daily patterns only, no labelled events; ``flood``: a city-wide
#: rainstorm (CMA orange) and the river flood it drives; ``all``: the flood
#: scenario plus a traffic incident on every traffic sensor.
SCENARIOS: tuple[str, ...] = ("normal", "flood", "all")

#: the demo city keeps China Standard Time (UTC+8) for its daily rhythms
LOCAL_UTC_OFFSET_H = 8.0


@dataclass(frozen=True)
class SimReading:
    """One simulated measurement; ``ts`` is simulated time (epoch seconds)."""

    sensor_id: str
    kind: str
    district: str
    ts: float
    values: dict[str, float]

    @property
    def topic(self) -> str:
        return mqtt_topic(self.district, self.kind, self.sensor_id)


@dataclass(frozen=True)
class Label:
    """Ground truth: ``label`` held at ``sensor_id`` from ``start`` to ``end`` (inclusive)."""

    sensor_id: str
    label: str
    start: float
    end: float

    def as_dict(self) -> dict[str, str]:
        return {"sensor_id": self.sensor_id, "label": self.label,
                "start": format_ts(self.start), "end": format_ts(self.end)}


@dataclass(frozen=True)
class Clock:
    """The simulated window: ``duration_h`` hours from ``start`` (epoch seconds)."""

    start: float
    duration_h: float

    @property
    def end(self) -> float:
        return self.start + self.duration_h * 3600.0

    def times(self, interval_s: float) -> list[float]:
        """Reading times every ``interval_s`` from ``start``, before ``end``."""
        n = max(1, math.ceil(self.duration_h * 3600.0 / interval_s))
        return [self.start + i * interval_s for i in range(n)]


def rng_for(seed: int, sensor_id: str, purpose: str = "") -> random.Random:
    """A random stream private to one sensor and purpose, fixed by ``seed``."""
    return random.Random(f"cityeye|{seed}|{sensor_id}|{purpose}")


def local_hour(ts: float) -> float:
    """Hour of the local day (0-24) at ``ts``."""
    return ((ts / 3600.0) + LOCAL_UTC_OFFSET_H) % 24.0


@dataclass(frozen=True)
class Storm:
    """A rain pulse over the whole city: a sin^2 bell from ``start`` to ``end``.

    ``total_mm`` falls in all (before a station's own factor); the rain
    between two times is exact (:meth:`rain_between`), so totals and 3-hour
    sums are known in advance.
    """

    start: float
    end: float
    total_mm: float

    def cumulative(self, t: float) -> float:
        """Rain (mm) fallen from ``start`` up to ``t``."""
        if t <= self.start:
            return 0.0
        if t >= self.end:
            return self.total_mm
        x = (t - self.start) / (self.end - self.start)
        return self.total_mm * (x - math.sin(2 * math.pi * x) / (2 * math.pi))

    def rain_between(self, t0: float, t1: float) -> float:
        return self.cumulative(t1) - self.cumulative(t0)

    def intensity(self, t: float) -> float:
        """0..1: how far into the heavy part of the storm ``t`` is."""
        if not self.start < t < self.end:
            return 0.0
        return math.sin(math.pi * (t - self.start) / (self.end - self.start)) ** 2


def storm_for(clock: Clock, scenario: str, seed: int) -> Storm | None:
    """The scenario's city-wide rainstorm (``None`` for ``normal``).

    70-85 mm within at most 3 hours: at least the CMA orange signal
    (>= 50 mm in 3 h) at every station (station factors are >= 0.9), short of
    red (100 mm). Starts 15 % into the window so the flood peak fits.
    """
    if scenario == "normal":
        return None
    rng = rng_for(seed, "city", "storm")
    length = min(3 * 3600.0, 0.4 * clock.duration_h * 3600.0)
    start = clock.start + 0.15 * clock.duration_h * 3600.0 + rng.uniform(0, 0.05) * clock.duration_h * 3600.0
    return Storm(start=start, end=start + length, total_mm=rng.uniform(70.0, 85.0))


def showers_for(clock: Clock, seed: int, sensor_id: str) -> list[Storm]:
    """Light local showers (1-8 mm each, about one a day), far below any rainstorm signal."""
    rng = rng_for(seed, sensor_id, "showers")
    count = int(clock.duration_h // 18) + (1 if rng.random() < 0.5 else 0)
    out = []
    for _ in range(count):
        start = clock.start + rng.uniform(0, clock.duration_h * 3600.0)
        out.append(Storm(start, start + rng.uniform(0.5, 2.0) * 3600.0, rng.uniform(1.0, 8.0)))
    return out


def episodes(times: Sequence[float], flags: Sequence[bool], merge_gap_s: float = 0.0) -> list[tuple[float, float]]:
    """``(first, last)`` times of each run of true ``flags``.

    A run continues over consecutive flagged readings; two runs whose gap
    (last to first) is at most ``merge_gap_s`` become one (no chattering).
    """
    runs: list[list[float]] = []
    previous = False
    for t, flag in zip(times, flags):
        if flag:
            if runs and (previous or t - runs[-1][1] <= merge_gap_s):
                runs[-1][1] = t
            else:
                runs.append([t, t])
        previous = bool(flag)
    return [(a, b) for a, b in runs]


def trailing_sums(times: Sequence[float], amounts: Sequence[float], window_s: float) -> list[float]:
    """For each time, the sum of ``amounts`` at times in ``(t - window_s, t]``."""
    sums, total, lo = [], 0.0, 0
    for hi, t in enumerate(times):
        total += amounts[hi]
        while times[lo] <= t - window_s:
            total -= amounts[lo]
            lo += 1
        sums.append(round(total, 6))
    return sums


class TippingBucket:
    """Rounds rain to the gauge's resolution, carrying the remainder (totals stay exact)."""

    def __init__(self, resolution_mm: float = 0.1) -> None:
        self.resolution = resolution_mm
        self._carry = 0.0

    def __call__(self, mm: float) -> float:
        self._carry += mm
        tips = math.floor(self._carry / self.resolution + 1e-9)
        self._carry -= tips * self.resolution
        return round(tips * self.resolution, 1)

