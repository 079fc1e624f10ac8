"""Forecast early warning: when will the trend reach the level?

:class:`LevelForecast` is Prometheus's ``predict_linear`` / Delft-FEWS's
forecast threshold crossing, made robust and honest about its uncertainty:

* the trend is a Theil-Sen line (median of pairwise slopes, intercept the
  median of the offsets) over the last ``window_s`` seconds, so a spike or
  two does not tilt it;
* the residual scale is the MAD of the residuals (× 1.4826), giving standard
  errors of the slope and of the fitted current value as for least squares;
* the time to the crossing is ``eta = (level - now) / slope`` with a
  delta-method standard deviation combining both errors.

It fires **before** the crossing: when the trend is significantly towards the
level (``significance`` standard errors from flat) and the predicted crossing
is within ``horizon_s``. It clears when the trend no longer predicts a
crossing within the horizon, **and once the level is actually reached**: the
forecast's job is the lead time; from the crossing on the level rule
(:class:`~detectors.levels.WarningLevels`) reports the condition, and two
findings about the same fact would only be noise.
"""

from __future__ import annotations

import functools
import math
from collections import deque

import numpy as np

from cityeye.contracts import SEVERITIES, SEVERITY_RANK
from detectors.base import Finding, Rule
from detectors.levels import JSONStateMixin, finite_value, fmt_value, label_of, unit_of

__all__ = ["LevelForecast", "theil_sen"]

_MAX_PAIRWISE = 150  # above this many points, use pairs half the sample apart (O(n))


@functools.lru_cache(maxsize=256)
def _pairs(n: int) -> tuple[np.ndarray, np.ndarray]:
    """Index pairs (i, j) of ``n`` points whose slopes Theil-Sen takes the median of.

    All pairs i < j up to ``_MAX_PAIRWISE`` points, else pairs half the sample
    apart (O(n)). Cached (read-only arrays): a sensor's window size repeats.
    """
    if n <= _MAX_PAIRWISE:
        i, j = np.triu_indices(n, k=1)
    else:
        i = np.arange(n - n // 2)
        j = i + n // 2
    i.flags.writeable = False
    j.flags.writeable = False
    return i, j


def theil_sen(t: np.ndarray, y: np.ndarray) -> tuple[float, float]:
    """Theil-Sen slope and intercept (at ``t = 0``) of ``y`` against ``t``.

    >>> theil_sen(np.array([0.0, 1.0, 2.0, 3.0]), np.array([1.0, 3.0, 50.0, 7.0]))
    (2.0, 1.0)
    """
    i, j = _pairs(len(t))
    dt = t[j] - t[i]
    ok = dt != 0
    slope = float(np.median((y[j] - y[i])[ok] / dt[ok]))
    return slope, float(np.median(y - slope * t))


#: below this many points the fit runs in plain Python (numpy's per-call cost dominates; 15-minute gauges)
_SMALL_FIT = 8


def _median(values: list[float]) -> float:
    s = sorted(values)
    mid = len(s) // 2
    return s[mid] if len(s) % 2 else (s[mid - 1] + s[mid]) / 2.0


def _sum(values: list[float]) -> float:
    total = 0.0
    for v in values:  # left to right, as numpy sums fewer than 8 values
        total += v
    return total


def _small_fit(tc: list[float], y: list[float]) -> tuple[float, float, float, float, float]:
    """:func:`theil_sen` and the residual statistics of :meth:`LevelForecast.forecast` for few points.

    The same float operations in the same order as the numpy path, so the
    results are bit-identical (tests/test_rules.py checks it) at a fraction
    of the cost for a handful of points.
    """
    n = len(tc)
    slopes = [(y[j] - y[i]) / (tc[j] - tc[i]) for i in range(n) for j in range(i + 1, n) if tc[j] != tc[i]]
    slope = _median(slopes)
    value = _median([yi - slope * ti for ti, yi in zip(tc, y)])
    resid = [yi - (value + slope * ti) for ti, yi in zip(tc, y)]
    centre = _median(resid)
    sigma = 1.4826 * _median([abs(r - centre) for r in resid])
    tm = _sum(tc) / n
    sxx = _sum([(ti - tm) * (ti - tm) for ti in tc])  # numpy squares as x * x
    return slope, value, sigma, tm, sxx


class LevelForecast(JSONStateMixin, Rule):
    """Predicted crossing of a level within a horizon, from the recent trend.

    Parameters
    ----------
    field
        The reading's field.
    level
        The level whose crossing is predicted.
    level_name
        Its name in messages (``"warning"`` -> "the warning level 4.50 m").
    horizon_s
        Fire when the predicted crossing is at most this far ahead.
    window_s
        The trend is fitted on the readings of this last window.
    severity
        Severity of the finding (a pre-warning: ``"blue"`` by default).
    direction
        ``"above"`` (rising to the level) or ``"below"`` (falling to it).
    min_points
        Fewest readings for a fit.
    min_span_s
        The readings must span at least this long (default half the window).
    significance
        The slope must be at least this many standard errors towards the
        level (a flat noisy series near the level does not fire).
    name
        Default ``"<field>.forecast"``.

    Examples
    --------
    >>> r = LevelForecast("level_m", level=4.5, horizon_s=3600, window_s=1800)
    >>> for i in range(31):                  # rising 0.6 m/h from 3.9 m
    ...     f = r.update({"level_m": 3.9 + 0.01 * i}, 60.0 * i)
    >>> f.message
    'level predicted to reach the warning level 4.50 m in 30 ± 0 min (rising 0.60 m/h)'
    >>> round(f.extra["eta_s"])
    1800
    >>> r.update({"level_m": 4.51}, 1860.0) is None      # reached: the level rule takes over
    True
    """

    def __init__(
        self,
        field: str = "level_m",
        level: float = 4.5,
        level_name: str = "warning",
        horizon_s: float = 3600.0,
        window_s: float = 1800.0,
        severity: str = "blue",
        direction: str = "above",
        min_points: int = 5,
        min_span_s: float | None = None,
        significance: float = 2.0,
        name: str | None = None,
    ) -> None:
        self.field = field
        self.level = level
        self.level_name = level_name
        self.horizon_s = horizon_s
        self.window_s = window_s
        self.severity = severity
        self.direction = direction
        self.min_points = min_points
        self.min_span_s = min_span_s
        self.significance = significance
        self.name = name or f"{field}.forecast"
        if severity not in SEVERITY_RANK:
            raise ValueError(f"severity {severity!r} not in {SEVERITIES}")
        if direction not in ("above", "below"):
            raise ValueError("direction must be 'above' or 'below'")
        if not (horizon_s > 0 and window_s > 0) or int(min_points) < 3:
            raise ValueError("horizon_s and window_s must be positive, min_points >= 3")
        self._current: Finding | None = None
        self._buf: deque = deque()  # [t, v] within the window

    def forecast(self, t: float) -> dict[str, float] | None:
        """The fitted trend at ``t``: ``value``, ``slope`` (per s), ``value_sd``, ``slope_sd``."""
        n = len(self._buf)
        if n < self.min_points:
            return None
        min_span = self.window_s / 2 if self.min_span_s is None else self.min_span_s
        if self._buf[-1][0] - self._buf[0][0] < max(min_span, 1e-9):
            return None
        if n < _SMALL_FIT:
            slope, value, sigma, tm, sxx = _small_fit([p[0] - t for p in self._buf], [p[1] for p in self._buf])
        else:
            arr = np.asarray(self._buf, dtype=float)
            tc, y = arr[:, 0] - t, arr[:, 1]
            slope, value = theil_sen(tc, y)
            resid = y - (value + slope * tc)
            sigma = 1.4826 * float(np.median(np.abs(resid - np.median(resid))))
            tm = float(tc.mean())
            sxx = float(((tc - tm) ** 2).sum())
        return {
            "value": value,
            "slope": slope,
            "value_sd": sigma * math.sqrt(1.0 / n + tm * tm / sxx),
            "slope_sd": sigma / math.sqrt(sxx),
        }

    def update(self, x: dict[str, float], t: float) -> Finding | None:
        v = finite_value(x, self.field)
        if v is None or (self._buf and t <= self._buf[-1][0]):
            return self._current
        self._buf.append([t, v])
        while self._buf[0][0] < t - self.window_s:
            self._buf.popleft()
        sign = 1.0 if self.direction == "above" else -1.0
        if sign * (v - self.level) >= 0:  # reached: WarningLevels reports it from now on
            self._current = None
            return None
        fc = self.forecast(t)
        if fc is None:  # too few readings for a trend: no prediction
            self._current = None
            return None
        b = sign * fc["slope"]  # towards the level, per second
        gap = sign * (self.level - fc["value"])  # distance still to go
        if b <= 0 or b < self.significance * fc["slope_sd"]:
            self._current = None
            return None
        eta = max(0.0, gap / b)
        if eta > self.horizon_s:
            self._current = None
            return None
        eta_sd = math.sqrt((fc["value_sd"] / b) ** 2 + (max(gap, 0.0) * fc["slope_sd"] / b**2) ** 2)
        u = unit_of(self.field) or "units"
        verb = "rising" if sign > 0 else "falling"
        lvl = fmt_value(self.level, self.field)
        self._current = Finding(
            rule=self.name,
            severity=self.severity,
            score=min(1.0, max(0.0, 1.0 - eta / self.horizon_s)),
            value=v,
            threshold=self.level,
            message=(
                f"{label_of(self.field)} predicted to reach the {self.level_name} level {lvl} in "
                f"{eta / 60:.0f} ± {eta_sd / 60:.0f} min ({verb} {abs(fc['slope']) * 3600:.2f} {u}/h)"
            ),
            field=self.field,
            extra={
                "eta_s": eta,
                "eta_sd_s": eta_sd,
                "predicted_at": t + eta,
                "rate_per_hour": fc["slope"] * 3600.0,
            },
        )
        return self._current
