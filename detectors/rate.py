"""Rate of rise (or fall): the value changes by at least X per hour.

:class:`RateOfChange` fits a least-squares slope to the readings of the last
``window_s`` seconds (less sensitive to one noisy reading than the difference
of two end points; running sums, O(1) amortised per reading:
:mod:`detectors._line_fit`) and compares it, in units per hour, with one or several
rate levels, e.g. a river rising ≥ 0.3 m/h.
"""

from __future__ import annotations

from typing import Any

from cityeye.contracts import SEVERITIES, SEVERITY_RANK
from detectors._line_fit import WindowedLineFit
from detectors.base import Finding, LazyFinding, Rule, severity_score
from detectors.levels import JSONStateMixin, encode_state, finite_value, fmt_duration, label_of, unit_of

__all__ = ["RateOfChange"]


class RateOfChange(JSONStateMixin, Rule):
    """Rising (or falling) at least ``rate_per_hour`` over a window.

    Parameters
    ----------
    field
        The reading's field.
    rate_per_hour
        The rate (field units per hour, positive) that fires ``severity``.
        Ignored when ``levels`` is given.
    window_s
        The window of readings the slope is fitted on.
    severity
        Severity of the single-level form.
    levels
        ``{severity: rate_per_hour}`` for several levels, e.g.
        ``{"blue": 0.3, "yellow": 0.5}``.
    direction
        ``"rising"`` or ``"falling"`` (rates are then rates of fall).
    min_span_s
        The readings must span at least this long for a slope (default half
        the window), so two close readings cannot fire it.
    reset_ratio
        Hysteresis: a severity in force stays while the rate is at least
        ``reset_ratio`` times its level.
    name
        Default ``"<field>.rate"``.

    Examples
    --------
    >>> r = RateOfChange("level_m", rate_per_hour=0.3, window_s=3600)
    >>> for i in range(7):                 # +0.06 m every 10 min = 0.36 m/h
    ...     f = r.update({"level_m": 3.0 + 0.06 * i}, 600.0 * i)
    >>> f.severity, f.message
    ('yellow', 'level rising 0.36 m/h over the last 60 min (≥ 0.30 m/h)')
    >>> for i in range(7, 12):             # levelling off
    ...     f = r.update({"level_m": 3.36}, 600.0 * i)
    >>> f is None
    True
    """

    def __init__(
        self,
        field: str = "level_m",
        rate_per_hour: float = 0.3,
        window_s: float = 3600.0,
        severity: str = "yellow",
        levels: dict[str, float] | None = None,
        direction: str = "rising",
        min_span_s: float | None = None,
        reset_ratio: float = 0.8,
        name: str | None = None,
    ) -> None:
        self.field = field
        self.rate_per_hour = rate_per_hour
        self.window_s = window_s
        self.severity = severity
        self.levels = levels
        self.direction = direction
        self.min_span_s = min_span_s
        self.reset_ratio = reset_ratio
        self.name = name or f"{field}.rate"
        if direction not in ("rising", "falling"):
            raise ValueError("direction must be 'rising' or 'falling'")
        lv = dict(levels) if levels else {severity: rate_per_hour}
        for s, r in lv.items():
            if s not in SEVERITY_RANK:
                raise ValueError(f"severity {s!r} not in {SEVERITIES}")
            if not r > 0:
                raise ValueError("rates must be positive")
        if window_s <= 0:
            raise ValueError("window_s must be positive")
        self._lv = lv
        self._current: Finding | None = None
        self._fit = WindowedLineFit(window_s)  # the readings within the window

    def snapshot(self) -> dict[str, Any]:
        return {"_current": encode_state(self._current), "_fit": self._fit.snapshot()}

    def restore(self, state: dict[str, Any]) -> None:
        fit = state.get("_fit", state.get("_buf"))  # _buf: [[t, v], ...] before the running fit
        super().restore({"_current": state.get("_current")})
        self._fit.restore(fit)

    def _slope_per_hour(self) -> float | None:
        span = self._fit.span_s
        min_span = self.window_s / 2 if self.min_span_s is None else self.min_span_s
        if span <= 0 or span < min_span:
            return None
        slope = self._fit.slope()
        return None if slope is None else slope * 3600.0

    def update(self, x: dict[str, float], t: float) -> Finding | None:
        v = finite_value(x, self.field)
        newest = self._fit.newest_t
        if v is None or (newest is not None and t <= newest):
            return self._current  # missing value, or out of order / duplicate time
        self._fit.add(t, v)
        slope = self._slope_per_hour()
        if slope is None:
            return self._current
        rate = slope if self.direction == "rising" else -slope
        cur_rank = self._current.rank if self._current else 0
        new = None
        for s, level in self._lv.items():
            met = rate >= level or (SEVERITY_RANK[s] <= cur_rank and rate >= self.reset_ratio * level)
            if met and (new is None or SEVERITY_RANK[s] > SEVERITY_RANK[new]):
                new = s
        if new is None:
            self._current = None
            return None
        level = self._lv[new]
        span = self._fit.span_s
        self._current = LazyFinding(
            self.name, new, severity_score(new), rate, level,
            _rate_message, (self.field, self.direction, rate, span, level),
            field=self.field, extra={"rate_per_hour": rate, "span_s": span},
        )
        return self._current


def _rate_message(field: str, direction: str, rate: float, span: float, level: float) -> str:
    """:class:`RateOfChange`'s message: the rate, over how long, against which level."""
    u = unit_of(field) or "units"
    return f"{label_of(field)} {direction} {rate:.2f} {u}/h over the last {fmt_duration(span)} (≥ {level:.2f} {u}/h)"
