"""Rolling rainfall accumulation: China Meteorological Administration rainstorm signals.

:class:`RainfallAccumulation` sums ``rain_mm`` (rain since the previous
reading) over several rolling windows at once and raises the highest signal
whose criterion is met. Each reading's rain is counted in a window
``(t - window, t]`` by its own time stamp.

Cost is O(1) amortised per reading: one bounded deque of ``[t, mm]`` pruned to
the longest window, and per window a running sum and the index of its oldest
entry (advanced, never rescanned).
"""

from __future__ import annotations

from collections import deque
from typing import Any

from cityeye.contracts import SEVERITIES, SEVERITY_RANK
from detectors.base import Finding, Rule, severity_score
from detectors.levels import JSONStateMixin, finite_value, fmt_duration

__all__ = ["RainfallAccumulation", "CMA_RAINSTORM"]

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
        self._current: Finding | None = None
        self._buf: deque = deque()  # [t, mm], pruned to the longest window
        self._sums: list[float] = [0.0] * len(self._windows)  # per window
        self._starts: list[int] = [0] * len(self._windows)  # index in _buf of each window's oldest entry
        self._last_t: float | None = None

    def snapshot(self) -> dict[str, Any]:
        keep = ("_current", "_buf", "_sums", "_starts", "_last_t")
        return {k: v for k, v in super().snapshot().items() if k in keep}

    def totals(self) -> dict[float, float]:
        """Current accumulation per window length (seconds -> mm)."""
        return {w: max(0.0, s) for w, s in zip(self._windows, self._sums)}

    def update(self, x: dict[str, float], t: float) -> Finding | None:
        mm = finite_value(x, self.field)
        if mm is None or mm < 0 or (self._last_t is not None and t < self._last_t):
            return self._current
        self._last_t = t
        buf = self._buf
        buf.append([t, mm])
        for i, w in enumerate(self._windows):
            self._sums[i] += mm
            j = self._starts[i]
            while buf[j][0] <= t - w:
                self._sums[i] -= buf[j][1]
                j += 1
            self._starts[i] = j
            if j == len(buf) - 1 and j >= 0:  # only the new reading: drop float residue
                self._sums[i] = mm
        drop = self._starts[-1]  # the longest window's start
        for _ in range(drop):
            buf.popleft()
        if drop:
            self._starts = [j - drop for j in self._starts]

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
        self._current = Finding(
            rule=self.name,
            severity=s,
            score=severity_score(s),
            value=total,
            threshold=amount,
            message=f"rain {total:.1f} mm in {fmt_duration(w)} ≥ {amount:.0f} mm ({s} rainstorm criterion)",
            field=self.field,
            extra={"window_s": w, "totals_mm": {str(int(k)): v for k, v in totals.items()}},
        )
        return self._current
