"""Sustained conditions: daily maxima on consecutive days, maxima within a window.

:class:`SustainedCondition` defaults to China's high-temperature signals 高温预警:
yellow when the daily maximum is ≥ 35 °C on 3 consecutive local days, orange
when ≥ 37 °C within 24 h, red when ≥ 40 °C within 24 h. The official signals are
forecasts; on observations they read "has been observed".
"""

from __future__ import annotations

import math
from bisect import bisect_right
from typing import Any

from cityeye.contracts import SEVERITIES, SEVERITY_RANK
from detectors._columns import TimedColumns
from detectors.base import Finding, LazyFinding, Rule, severity_score
from detectors.levels import JSONStateMixin, encode_state, finite_value, fmt_duration, fmt_value, label_of

#: most readings in the sliding-maximum queue; beyond, neighbours merge (see SustainedCondition)
_MAX_QUEUE = 128

__all__ = ["SustainedCondition", "CMA_HIGH_TEMPERATURE_DAILY", "CMA_HIGH_TEMPERATURE_WITHIN"]

#: ``[severity, level, consecutive days]``
CMA_HIGH_TEMPERATURE_DAILY: list[list] = [["yellow", 35.0, 3]]
#: ``[severity, level, window_s]``
CMA_HIGH_TEMPERATURE_WITHIN: list[list] = [["orange", 37.0, 86400.0], ["red", 40.0, 86400.0]]


def _merge_pairs(q: TimedColumns) -> None:
    """Halve a decreasing queue: each pair of neighbours becomes (the later time, the higher value)."""
    ts, vs = q.t[q.head:], q.v[q.head:]
    keep_last = len(ts) % 2  # the newest reading stays as it is when the count is odd
    q.clear()
    for k in range(0, len(ts) - keep_last, 2):
        q.append(ts[k + 1], vs[k])
    if keep_last:
        q.append(ts[-1], vs[-1])


class SustainedCondition(JSONStateMixin, Rule):
    """Daily maxima on consecutive days and maxima within rolling windows.

    Days are local calendar days (``utc_offset_h``, default 8 for China
    Standard Time). A run of days counts days in a row with a reading whose
    daily maximum met the level; a day with no reading breaks the run. The run
    is *in force* while it ends today or yesterday: a day's maximum is only
    known once the day is over, so a run survives into the next day until that
    day ends without meeting the level (it is then dropped on the next
    reading). A window criterion is met while the maximum of the readings in
    ``(t - window, t]`` meets the level (a monotonic queue of the readings
    at or above the lowest such level keeps it O(1) amortised and small: a
    reading below every level can never be the maximum that meets one). The
    queue holds at most 128 readings: past that (a day-long fall above the
    level, sampled often) each pair of neighbours merges into the higher
    value at the later time, so a maximum may be held a little longer (at
    most the time between merged readings), never dropped early. The
    highest severity met wins.

    Parameters
    ----------
    field
        The reading's field, default ``"temp_c"``.
    daily
        ``[[severity, level, days], ...]``; default
        :data:`CMA_HIGH_TEMPERATURE_DAILY`.
    within
        ``[[severity, level, window_s], ...]``; default
        :data:`CMA_HIGH_TEMPERATURE_WITHIN`.
    utc_offset_h
        Offset of local time from UTC, hours.
    name
        Default ``"<field>.sustained"``.

    Examples
    --------
    >>> r = SustainedCondition()
    >>> day = 86400.0
    >>> for d in range(3):                    # 14:00 CST = 06:00 UTC, 36 °C
    ...     f = r.update({"temp_c": 36.0}, d * day + 6 * 3600)
    >>> f.severity, f.message
    ('yellow', 'daily maximum temp ≥ 35.0°C on 3 consecutive days (today 36.0°C)')
    >>> r.update({"temp_c": 40.5}, 3 * day + 6 * 3600).severity
    'red'
    """

    def __init__(
        self,
        field: str = "temp_c",
        daily: list | None = None,
        within: list | None = None,
        utc_offset_h: float = 8.0,
        name: str | None = None,
    ) -> None:
        self.field = field
        self.daily = daily
        self.within = within
        self.utc_offset_h = utc_offset_h
        self.name = name or f"{field}.sustained"
        dl = [[str(s), float(lv), int(n)] for s, lv, n in (daily if daily is not None else CMA_HIGH_TEMPERATURE_DAILY)]
        wl = [[str(s), float(lv), float(w)] for s, lv, w in (within if within is not None else CMA_HIGH_TEMPERATURE_WITHIN)]
        for s, _, n in dl + wl:
            if s not in SEVERITY_RANK:
                raise ValueError(f"severity {s!r} not in {SEVERITIES}")
            if n <= 0:
                raise ValueError("days and windows must be positive")
        if not dl and not wl:
            raise ValueError("give at least one daily or within criterion")
        self._dl = dl
        self._wl = wl
        self._keep_days = max([n for _, _, n in dl], default=1) + 1
        self._longest = max([w for _, _, w in wl], default=0.0)
        self._lowest = min([lv for _, lv, _ in wl], default=math.inf)  # readings below it are never queued
        self._lowest_daily = min([lv for _, lv, _ in dl], default=math.inf)  # a run needs a day at or above it
        self._current: Finding | None = None
        self._days: list = []  # [local day number, daily max], oldest first
        self._maxq = TimedColumns()  # readings >= _lowest with decreasing values (sliding maximum)
        self._last_t: float | None = None

    def snapshot(self) -> dict[str, Any]:
        return {"_current": encode_state(self._current), "_days": [list(d) for d in self._days],
                "_maxq": self._maxq.snapshot(), "_last_t": self._last_t}

    def restore(self, state: dict[str, Any]) -> None:
        super().restore({k: state[k] for k in ("_current", "_days", "_last_t") if k in state})
        q = state.get("_maxq")
        if isinstance(q, list):  # the layout before the columns: [[t, v], ...]
            q = {"t": [p[0] for p in q if p[1] >= self._lowest], "v": [p[1] for p in q if p[1] >= self._lowest]}
        self._maxq = TimedColumns.restored(q)

    def _day(self, t: float) -> int:
        return math.floor((t + self.utc_offset_h * 3600.0) / 86400.0)

    def _run(self, level: float, today: int) -> int:
        """Consecutive days meeting ``level`` ending today (or yesterday if today does not yet)."""
        days = self._days
        i = len(days) - 1
        if i >= 0 and days[i][0] == today and days[i][1] < level:
            i -= 1  # today has not met it (yet): the run may end yesterday
        if i < 0 or days[i][0] < today - 1 or days[i][1] < level:
            return 0
        n, expect = 0, days[i][0]
        while i >= 0 and days[i][0] == expect and days[i][1] >= level:
            n, expect, i = n + 1, expect - 1, i - 1
        return n

    def update(self, x: dict[str, float], t: float) -> Finding | None:
        v = finite_value(x, self.field)
        if v is None or (self._last_t is not None and t < self._last_t):
            return self._current
        self._last_t = t
        today = self._day(t)
        if self._days and self._days[-1][0] == today:
            self._days[-1][1] = max(self._days[-1][1], v)
        else:
            self._days.append([today, v])
            del self._days[: -self._keep_days]
        q = self._maxq
        if v >= self._lowest:
            while len(q) and q.v[-1] <= v:
                q.t.pop()
                q.v.pop()
            q.append(t, v)
            if len(q) > _MAX_QUEUE:
                _merge_pairs(q)
        head, qt = q.head, q.t
        while head < len(qt) and qt[head] <= t - self._longest:
            head += 1
        q.head = head
        q.cut()
        days = self._days
        if not len(q) and days[-1][1] < self._lowest_daily and (len(days) < 2 or days[-2][1] < self._lowest_daily):
            self._current = None  # the usual reading: nothing queued, and no run can end today or yesterday
            return None

        best = None  # (severity, level, value, message renderer, its arguments)
        for s, level, n in self._dl:
            run = self._run(level, today)
            if run >= n and (best is None or SEVERITY_RANK[s] > SEVERITY_RANK[best[0]]):
                best = (s, level, days[-1][1], _daily_message, (self.field, level, run, days[-1][1]))
        for s, level, w in self._wl:
            k = bisect_right(q.t, t - w, q.head)  # the oldest queued reading in the window: its maximum
            m = q.v[k] if k < len(q.t) else None
            if m is not None and m >= level and (best is None or SEVERITY_RANK[s] > SEVERITY_RANK[best[0]]):
                best = (s, level, m, _within_message, (self.field, level, m, w))
        if best is None:
            self._current = None
            return None
        s, level, value, render, args = best
        self._current = LazyFinding(self.name, s, severity_score(s), value, level, render, args, field=self.field)
        return self._current


def _daily_message(field: str, level: float, run: int, today_max: float) -> str:
    """:class:`SustainedCondition`'s message for a run of days."""
    return (f"daily maximum {label_of(field)} ≥ {fmt_value(level, field, 1)} on {run} "
            f"consecutive days (today {fmt_value(today_max, field, 1)})")


def _within_message(field: str, level: float, maximum: float, window_s: float) -> str:
    """:class:`SustainedCondition`'s message for a maximum within a window."""
    return (f"{label_of(field)} reached {fmt_value(maximum, field, 1)} within the last "
            f"{fmt_duration(window_s)} (≥ {fmt_value(level, field, 1)})")
