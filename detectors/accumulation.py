"""Rolling rainfall accumulation: China Meteorological Administration rainstorm signals.

:class:`RainfallAccumulation` sums ``rain_mm`` (rain since the previous
reading) over several rolling windows at once and raises the highest signal
whose criterion is met. Each reading's rain is counted in a window
``(t - window, t]`` by its own time stamp.

Cost is O(1) amortised per reading: the readings with rain (a dry reading adds
nothing to any window) in two flat columns (:class:`~detectors._columns.TimedColumns`,
16 bytes a reading) cut to the longest window, and per window a running sum
and the index of its oldest entry (advanced, never rescanned). Readings in
one cell of a time grid of ``resolution`` (1/180 of the shortest window: 60 s
for the CMA signals) share one entry stamped with the later time, so a sensor reporting
every few seconds keeps at most 180 entries per shortest window too; such a
bucket's rain leaves a window up to ``resolution`` late (never early). A dry
reading before the next entry leaves a window changes nothing and costs no
window arithmetic.
"""

from __future__ import annotations

import math
from typing import Any

from cityeye.contracts import SEVERITIES, SEVERITY_RANK
from detectors._columns import TimedColumns
from detectors.base import Finding, LazyFinding, Rule, severity_score
from detectors.levels import JSONStateMixin, encode_state, finite_value, fmt_duration

__all__ = ["RainfallAccumulation", "CMA_RAINSTORM"]

#: a dry reading this much before the oldest rain of a window leaves it changes nothing, whatever the rounding
#: of ``t - window`` (epoch seconds are ~2e9: their rounding is ~1e-7 s)
_QUIET_MARGIN_S = 1.0

#: China Meteorological Administration rainstorm signals 暴雨预警:
#: ``[severity, mm, window_s]``.
CMA_RAINSTORM: list[list] = [
    ["blue", 50.0, 12 * 3600.0],
    ["yellow", 50.0, 6 * 3600.0],
    ["orange", 50.0, 3 * 3600.0],
    ["red", 100.0, 3 * 3600.0],
]


class RainfallAccumulation(JSONStateMixin, Rule):
    """Rain accumulated over rolling windows against per-severity amounts.

    The highest severity whose amount is met in its window wins; the finding
    resolves once no window meets its criterion. Readings older than the
    last one are ignored (rain is a per-interval amount: re-counting a late
    duplicate would inflate the total); negative amounts are ignored.

    Parameters
    ----------
    field
        The per-reading rain amount, mm since the previous reading.
    signals
        ``[[severity, mm, window_s], ...]``; default :data:`CMA_RAINSTORM`
        (blue ≥ 50 mm/12 h, yellow ≥ 50 mm/6 h, orange ≥ 50 mm/3 h,
        red ≥ 100 mm/3 h).
    name
        Default ``"<field>.accumulation"``.

    Examples
    --------
    >>> r = RainfallAccumulation()
    >>> f = None
    >>> for i in range(12):                 # 5 mm every 15 min for 3 h: 60 mm
    ...     f = r.update({"rain_mm": 5.0}, 900.0 * (i + 1))
    >>> f.severity, f.message
    ('orange', 'rain 60.0 mm in 3 h ≥ 50 mm (orange rainstorm criterion)')
    >>> r.update({"rain_mm": 0.0}, 900.0 * 12 + 12 * 3600.0) is None
    True
    """

    def __init__(self, field: str = "rain_mm", signals: list | None = None, name: str | None = None) -> None:
        self.field = field
        self.signals = signals
        self.name = name or f"{field}.accumulation"
        sig = [[str(s), float(mm), float(w)] for s, mm, w in (signals if signals is not None else CMA_RAINSTORM)]
        if not sig:
            raise ValueError("signals must not be empty")
        for s, mm, w in sig:
            if s not in SEVERITY_RANK:
                raise ValueError(f"severity {s!r} not in {SEVERITIES}")
            if mm <= 0 or w <= 0:
                raise ValueError("amounts and windows must be positive")
        self._sig = sig
        self._windows = sorted({w for _, _, w in sig})
        self._longest = self._windows[-1]
        # per window, the least amount any signal asks in it: below every one of them, no signal is met
        self._least = [min(mm for _, mm, w in sig if w == window) for window in self._windows]
        self._window_text = {w: (fmt_duration(w), str(int(w))) for w in self._windows}  # for messages, extra
        self._current: Finding | None = None
        self._resolution = self._windows[0] / 180.0
        self._rain = TimedColumns()  # readings with rain, its head: the longest window's oldest
        self._sums: list[float] = [0.0] * len(self._windows)  # per window
        self._starts: list[int] = [0] * len(self._windows)  # index in _rain of each window's oldest entry
        self._last_t: float | None = None
        self._quiet_until = -math.inf  # a dry reading before it changes no window (set by a reading that counted)

    def snapshot(self) -> dict[str, Any]:
        rain = self._rain
        return {"_current": encode_state(self._current), "_rain": rain.snapshot(), "_sums": list(self._sums),
                "_starts": [j - rain.head for j in self._starts], "_last_t": self._last_t}

    def restore(self, state: dict[str, Any]) -> None:
        super().restore({k: state[k] for k in ("_current", "_last_t") if k in state})
        self._quiet_until = -math.inf
        if "_rain" in state:
            self._rain = TimedColumns.restored(state["_rain"])
            self._sums = [float(v) for v in state["_sums"]]
            self._starts = [int(j) for j in state["_starts"]]
            return
        self._rain = TimedColumns()  # the layout before the columns: [[t, mm], ...] -> the same totals
        self._sums, self._starts = [0.0] * len(self._windows), [0] * len(self._windows)
        last = self._last_t
        for t, mm in state.get("_buf") or []:
            if mm > 0 and last is not None and t > last - self._longest:
                self._rain.append(t, mm)
        for i, w in enumerate(self._windows):
            ts = self._rain.t
            self._starts[i] = next((j for j in range(len(ts)) if ts[j] > last - w), len(ts))
            self._sums[i] = sum(self._rain.v[self._starts[i]:])

    def totals(self) -> dict[float, float]:
        """Current accumulation per window length (seconds -> mm)."""
        return {w: max(0.0, s) for w, s in zip(self._windows, self._sums)}

    def update(self, x: dict[str, float], t: float) -> Finding | None:
        mm = finite_value(x, self.field)
        if mm is None or mm < 0 or (self._last_t is not None and t < self._last_t):
            return self._current
        self._last_t = t
        if not mm > 0 and t < self._quiet_until:
            return self._current  # dry, and no rain leaves any window yet: the windows are as they were
        rain, sums, starts = self._rain, self._sums, self._starts
        ts, mms = rain.t, rain.v
        if mm > 0:
            res = self._resolution
            if len(rain) and t // res == ts[-1] // res:  # one bucket of the time grid: the later time, the sum
                ts[-1] = t
                mms[-1] += mm
            else:
                rain.append(t, mm)
        end, quiet = len(ts), math.inf
        for i, w in enumerate(self._windows):
            j = starts[i]
            if mm > 0:
                sums[i] += mm
            while j < end and ts[j] <= t - w:
                sums[i] -= mms[j]
                j += 1
            starts[i] = j
            if j >= end - 1:  # nothing, or only the new reading, in the window: drop float residue
                sums[i] = mms[j] if j < end else 0.0
            if j < end and ts[j] + w < quiet:
                quiet = ts[j] + w  # when the window's oldest rain leaves it
        self._quiet_until = quiet - _QUIET_MARGIN_S
        rain.head = starts[-1]  # the longest window's start
        drop = rain.cut()
        if drop:
            self._starts = [j - drop for j in starts]

        for total, least in zip(sums, self._least):
            if total >= least:
                break
        else:  # the usual reading: no window holds the least amount any signal asks in it
            self._current = None
            return None
        totals = self.totals()
        best = None
        for s, amount, w in self._sig:
            if totals[w] >= amount and (best is None or SEVERITY_RANK[s] > SEVERITY_RANK[best[0]]):
                best = (s, amount, w)
        if best is None:
            self._current = None
            return None
        s, amount, w = best
        total = totals[w]
        self._current = LazyFinding(
            self.name, s, severity_score(s), total, amount,
            _rainstorm_message, (total, self._window_text[w][0], amount, s),
            field=self.field,
            extra={"window_s": w, "totals_mm": {self._window_text[k][1]: v for k, v in totals.items()}},
        )
        return self._current


def _rainstorm_message(total: float, window: str, amount: float, severity: str) -> str:
    """:class:`RainfallAccumulation`'s message: the total, its window and the criterion met."""
    return f"rain {total:.1f} mm in {window} ≥ {amount:.0f} mm ({severity} rainstorm criterion)"
