"""Wind by Beaufort force, with typhoon-signal-like levels.

:func:`beaufort_force` converts m/s to the Beaufort force (the WMO table at
10 m, extended to force 17 as in China's GB/T 28591-2012). :class:`WindBeaufort`
raises a severity when the mean wind or the gust reaches that severity's force.
"""

from __future__ import annotations

import math
from bisect import bisect_right
from typing import Any

from cityeye.contracts import SEVERITIES, SEVERITY_RANK
from detectors.base import Finding, LazyFinding, Rule, severity_score
from detectors.levels import JSONStateMixin, finite_value

__all__ = ["WindBeaufort", "beaufort_force", "calm_below", "BEAUFORT_LOWER_MS", "TYPHOON_SIGNALS"]

#: Lower bound (m/s) of Beaufort forces 0..17: force ``i`` is
#: ``BEAUFORT_LOWER_MS[i] <= v < BEAUFORT_LOWER_MS[i + 1]`` (speeds at one
#: decimal, as the table is published: 10.7 m/s is force 5, 10.8 force 6).
BEAUFORT_LOWER_MS: tuple[float, ...] = (
    0.0, 0.3, 1.6, 3.4, 5.5, 8.0, 10.8, 13.9, 17.2, 20.8, 24.5, 28.5, 32.7, 37.0, 41.5, 46.2, 51.0, 56.1,
)

#: ``[severity, mean force, gust force]`` after China's typhoon signals
#: (blue ≥ 6 / ≥ 8 ... red ≥ 12 / ≥ 14).
TYPHOON_SIGNALS: list[list] = [
    ["blue", 6, 8],
    ["yellow", 8, 10],
    ["orange", 10, 12],
    ["red", 12, 14],
]


def calm_below(force: float | None) -> float:
    """The speed (m/s) below which a wind is surely under Beaufort ``force``: ``-inf`` if none is, ``inf`` if all.

    A speed is rounded to 0.1 m/s before the table is read: 0.1 m/s below the
    force's lower bound, it cannot round up to it. ``None`` (no such force
    asked) and forces beyond the table: every speed is under it.

    >>> calm_below(6), calm_below(0), calm_below(None)
    (10.700000000000001, -inf, inf)
    >>> all(beaufort_force(v / 100) < 6 for v in range(0, 1070))
    True
    """
    if force is None or math.ceil(force) >= len(BEAUFORT_LOWER_MS):
        return math.inf
    if math.ceil(force) <= 0:
        return -math.inf
    return BEAUFORT_LOWER_MS[math.ceil(force)] - 0.1


def beaufort_force(ms: float) -> int:
    """Beaufort force (0-17) of a wind speed in m/s.

    Speeds are rounded to 0.1 m/s first, as the table's bounds are.

    >>> [beaufort_force(v) for v in (0.0, 0.2, 3.4, 10.7, 10.8, 17.2, 32.7, 70.0)]
    [0, 0, 3, 5, 6, 8, 12, 17]
    """
    v = round(max(0.0, float(ms)), 1)
    return bisect_right(BEAUFORT_LOWER_MS, v + 1e-9) - 1


class WindBeaufort(JSONStateMixin, Rule):
    """Mean wind or gust at or above each severity's Beaufort force.

    Parameters
    ----------
    field
        Mean wind speed field, m/s.
    gust_field
        Gust speed field, m/s (``None`` to use the mean only). Either field
        alone is enough for a reading.
    signals
        ``[[severity, mean force, gust force], ...]`` (a force may be
        ``None``); default :data:`TYPHOON_SIGNALS`.
    hold_s
        A severity stays in force this long after the last reading meeting it
        (gusts come and go; this stops the alert flapping). 0 = no hold.
    name
        Default ``"<field>.beaufort"``.

    Examples
    --------
    >>> r = WindBeaufort()
    >>> r.update({"wind_ms": 9.0, "gust_ms": 18.0}, 0).message
    'gust 18.0 m/s (force 8) ≥ force 8; mean 9.0 m/s (force 5)'
    >>> r.update({"wind_ms": 25.0}, 60).severity
    'orange'
    >>> r.update({"wind_ms": 3.0, "gust_ms": 5.0}, 120) is None
    True
    """

    def __init__(
        self,
        field: str = "wind_ms",
        gust_field: str | None = "gust_ms",
        signals: list | None = None,
        hold_s: float = 0.0,
        name: str | None = None,
    ) -> None:
        self.field = field
        self.gust_field = gust_field
        self.signals = signals
        self.hold_s = hold_s
        self.name = name or f"{field}.beaufort"
        sig = [[str(s), m, g] for s, m, g in (signals if signals is not None else TYPHOON_SIGNALS)]
        for s, _, _ in sig:
            if s not in SEVERITY_RANK:
                raise ValueError(f"severity {s!r} not in {SEVERITIES}")
        if not sig:
            raise ValueError("signals must not be empty")
        self._sig = sig
        # the weakest mean and gust forces any signal asks (none: that wind never meets one)
        self._least_mean = min((m for _, m, _ in sig if m is not None), default=None)
        self._least_gust = min((g for _, _, g in sig if g is not None), default=None)
        # the speeds below which the mean and the gust meet no signal (no rounding, no table look-up needed)
        self._calm_mean_ms, self._calm_gust_ms = calm_below(self._least_mean), calm_below(self._least_gust)
        self._current: Finding | None = None
        self._met: dict[str, list] = {}  # severity -> [t last met, value, force, "mean"|"gust", force level]

    def snapshot(self) -> dict[str, Any]:
        return {k: v for k, v in super().snapshot().items() if k in ("_current", "_met")}

    def update(self, x: dict[str, float], t: float) -> Finding | None:
        mean = finite_value(x, self.field)
        gust = finite_value(x, self.gust_field)
        if mean is None and gust is None:
            return self._current
        if not self._met and (mean is None or mean < self._calm_mean_ms) and (
                gust is None or gust < self._calm_gust_ms):
            self._current = None  # the usual reading: calm below every signal, none held
            return None
        fm = None if mean is None else beaufort_force(mean)
        fg = None if gust is None else beaufort_force(gust)
        if not self._met and (fm is None or self._least_mean is None or fm < self._least_mean) and (
                fg is None or self._least_gust is None or fg < self._least_gust):
            self._current = None  # the usual reading: below every signal, none held
            return None
        for s, lm, lg in self._sig:
            if fg is not None and lg is not None and fg >= lg:
                self._met[s] = [t, gust, fg, "gust", lg]
            elif fm is not None and lm is not None and fm >= lm:
                self._met[s] = [t, mean, fm, "mean", lm]
        for s in list(self._met):
            if t - self._met[s][0] > self.hold_s or t < self._met[s][0]:
                del self._met[s]
        if not self._met:
            self._current = None
            return None
        s = max(self._met, key=SEVERITY_RANK.__getitem__)
        t_met, value, force, which, level = self._met[s]
        other = (mean, fm, "mean") if which == "gust" else (gust, fg, "gust")
        self._current = LazyFinding(
            self.name, s, severity_score(s), value,
            BEAUFORT_LOWER_MS[int(level)] if 0 <= int(level) < len(BEAUFORT_LOWER_MS) else None,
            _wind_message, (which, value, force, level, t - t_met, other),
            field=self.field if which == "mean" else self.gust_field,
            extra={"force": force, "force_level": level, "mean_force": fm, "gust_force": fg},
        )
        return self._current


def _wind_message(which: str, value: float, force: int, level: float, held_s: float,
                  other: tuple[float | None, int | None, str]) -> str:
    """:class:`WindBeaufort`'s message: the wind meeting the level, how long ago if held, and the other wind now."""
    msg = f"{which} {value:.1f} m/s (force {force}) ≥ force {level}"
    if held_s > 0:
        msg += f" {held_s:.0f} s ago (held)"
    if other[0] is not None and held_s == 0:
        msg += f"; {other[2]} {other[0]:.1f} m/s (force {other[1]})"
    return msg
