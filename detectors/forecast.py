"""Forecast early warning: when will the trend reach the level?

:class:`LevelForecast` is Prometheus's ``predict_linear`` / Delft-FEWS's
forecast threshold crossing, made robust and honest about its uncertainty:

* the readings first pass a running median of three (Tukey's despiking
  filter: a lone spike never reaches the fit; the median of the last three
  readings is placed at the middle reading's time, so a steady trend goes
  through unchanged);
* the trend is a least-squares line over the last ``window_s`` seconds of
  the filtered series, kept as running sums (:mod:`detectors._line_fit`):
  O(1) amortised per reading, where a Theil-Sen refit cost O(window) numpy
  work per reading (the old fit is kept as the baseline in
  ``bench/bench_checks.py``);
* the residual scale ``sqrt(SSR / (n - 2))`` gives standard errors of the
  slope and of the fitted current value;
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

import math
from typing import Any

from cityeye.contracts import SEVERITIES, SEVERITY_RANK
from detectors._line_fit import LineEstimate, WindowedLineFit
from detectors.base import Finding, LazyFinding, Rule
from detectors.levels import JSONStateMixin, encode_state, finite_value, fmt_value, label_of, unit_of

__all__ = ["LevelForecast"]


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
        self._fit = WindowedLineFit(window_s)  # the median-of-3 filtered readings within the window
        self._recent: list[float] = []  # [t, v, t, v]: the two readings before the newest, for the median

    def snapshot(self) -> dict[str, Any]:
        return {"_current": encode_state(self._current), "_fit": self._fit.snapshot(), "_recent": list(self._recent)}

    def restore(self, state: dict[str, Any]) -> None:
        fit = state.get("_fit", state.get("_buf"))  # _buf: [[t, v], ...] before the running fit
        super().restore({"_current": state.get("_current")})
        self._fit.restore(fit)
        self._recent = [float(v) for v in state.get("_recent") or []][-4:]

    def _estimate(self, t: float, line: tuple[float, float] | None = None) -> LineEstimate | None:
        """The fit's line at ``t``, or ``None`` when too few readings or too short a span (``line``: the fit's
        :meth:`~detectors._line_fit.WindowedLineFit.trend` at ``t``, if the caller has it)."""
        fit = self._fit
        min_span = self.window_s / 2 if self.min_span_s is None else self.min_span_s
        if len(fit) < self.min_points or fit.span_s < max(min_span, 1e-9):
            return None
        return fit.estimate(t, line)

    def forecast(self, t: float) -> dict[str, float] | None:
        """The fitted trend at ``t``: ``value``, ``slope`` (per s), ``value_sd``, ``slope_sd``."""
        est = self._estimate(t)
        if est is None:
            return None
        return {"value": est.value, "slope": est.slope, "value_sd": est.value_sd, "slope_sd": est.slope_sd}

    def _learn(self, t: float, v: float) -> None:
        """Feed the fit the median of the last three readings, at the middle one's time."""
        recent = self._recent
        if len(recent) == 4:
            a, b = recent[1], recent[3]
            med = max(min(a, b), min(max(a, b), v))
            self._fit.add(recent[2], med)
            del recent[:2]
        recent += (t, v)

    def update(self, x: dict[str, float], t: float) -> Finding | None:
        v = finite_value(x, self.field)
        if v is None or (self._recent and t <= self._recent[-2]):
            return self._current
        self._learn(t, v)
        sign = 1.0 if self.direction == "above" else -1.0
        if sign * (v - self.level) >= 0:  # reached: WarningLevels reports it from now on
            self._current = None
            return None
        # cheapest tests first: no trend, or a trend away from the level, needs no line; a line that does not
        # reach the level within the horizon needs no spreads (the usual reading)
        fit = self._fit
        if len(fit) < self.min_points:
            self._current = None
            return None
        line = fit.trend(t)  # (slope, value now)
        if line is None or not sign * line[0] > 0 or sign * (self.level - line[1]) / (sign * line[0]) > self.horizon_s:
            self._current = None
            return None
        est = self._estimate(t, line)
        if est is None:  # too short a span for a trend: no prediction
            self._current = None
            return None
        b = sign * est.slope  # towards the level, per second
        gap = sign * (self.level - est.value)  # distance still to go
        eta = max(0.0, gap / b) if b > 0 else math.inf
        if eta > self.horizon_s or b < self.significance * est.slope_sd:
            self._current = None
            return None
        eta_sd = math.sqrt((est.value_sd / b) ** 2 + (max(gap, 0.0) * est.slope_sd / b**2) ** 2)
        self._current = LazyFinding(
            self.name, self.severity, min(1.0, max(0.0, 1.0 - eta / self.horizon_s)), v, self.level,
            _forecast_message, (self.field, self.level_name, self.level, eta, eta_sd, sign, est.slope),
            field=self.field,
            extra={"eta_s": eta, "eta_sd_s": eta_sd, "predicted_at": t + eta, "rate_per_hour": est.slope * 3600.0},
        )
        return self._current


def _forecast_message(field: str, level_name: str, level: float, eta: float, eta_sd: float, sign: float,
                      slope: float) -> str:
    """:class:`LevelForecast`'s message: the level, when it is predicted to be reached, and the trend."""
    return (f"{label_of(field)} predicted to reach the {level_name} level {fmt_value(level, field)} in "
            f"{eta / 60:.0f} ± {eta_sd / 60:.0f} min ({'rising' if sign > 0 else 'falling'} "
            f"{abs(slope) * 3600:.2f} {unit_of(field) or 'units'}/h)")
