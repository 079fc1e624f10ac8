"""A least-squares line over a sliding time window, O(1) amortised per point.

:class:`WindowedLineFit` keeps the points of the last ``window_s`` seconds in
two flat columns (:class:`~detectors._columns.TimedColumns`: 16 bytes a
point, no Python object per point) and the running sums ``n, Σt, Σy, Σt², Σty, Σy²`` of the live points,
with times taken relative to an anchor near the oldest point. A new point
adds to the sums, an expired one subtracts from them. Once the anchor is
two windows old the sums are recomputed from the live points with the
oldest as the new anchor (O(live) once a window: O(1) amortised, and no
drift of the running sums outlives a window); expired points are cut off
the columns once there are as many as live ones. The snapshot holds the
anchor and the sums, so a restored fit computes the same floats as the
one it was taken from. The rate-of-rise rule and the forecast share it.
"""

from __future__ import annotations

import math
from typing import Any

from detectors._columns import TimedColumns

__all__ = ["WindowedLineFit", "LineEstimate"]

class LineEstimate:
    """A fitted line: ``slope`` per second, its value at ``t`` and the spreads behind them.

    Attributes
    ----------
    n
        Number of points.
    span_s
        Time from the oldest to the newest point.
    slope
        Least-squares slope (per second).
    value
        The line's value at the time asked for.
    sigma
        Residual standard deviation (``sqrt(SSR / (n - 2))``; 0 for two points).
    sxx
        ``Σ (t - mean t)²``.
    dt_mean
        Mean point time minus the time asked for (``<= 0`` for a current time).
    """

    __slots__ = ("n", "span_s", "slope", "value", "sigma", "sxx", "dt_mean")

    def __init__(self, n: int, span_s: float, slope: float, value: float, sigma: float, sxx: float,
                 dt_mean: float) -> None:
        self.n, self.span_s, self.slope, self.value = n, span_s, slope, value
        self.sigma, self.sxx, self.dt_mean = sigma, sxx, dt_mean

    @property
    def slope_sd(self) -> float:
        """Standard error of the slope."""
        return self.sigma / math.sqrt(self.sxx)

    @property
    def value_sd(self) -> float:
        """Standard error of the fitted value at the time asked for."""
        return self.sigma * math.sqrt(1.0 / self.n + self.dt_mean * self.dt_mean / self.sxx)


class WindowedLineFit:
    """Least-squares line through the points of the last ``window_s`` seconds.

    Points must come in increasing time order (the caller drops late ones).

    Parameters
    ----------
    window_s
        Points older than ``newest - window_s`` are dropped.

    Examples
    --------
    >>> fit = WindowedLineFit(window_s=600)
    >>> for i in range(20):
    ...     fit.add(60.0 * i, 1.0 + 0.5 * i + (0.1 if i % 2 else -0.1))
    >>> len(fit), fit.span_s
    (11, 600.0)
    >>> est = fit.estimate(1140.0)
    >>> round(est.slope * 60, 3), round(est.value, 1)
    (0.5, 10.5)
    """

    __slots__ = ("window_s", "_pts", "_n", "_t0", "_st", "_sy", "_stt", "_sty", "_syy")

    def __init__(self, window_s: float) -> None:
        self.window_s = float(window_s)
        self._pts = TimedColumns()  # its head: the oldest live point
        self._n = 0  # live points
        self._recompute(0.0)

    def __len__(self) -> int:
        return self._n

    @property
    def newest_t(self) -> float | None:
        return self._pts.t[-1] if self._n else None

    @property
    def span_s(self) -> float:
        """Time from the oldest live point to the newest (0 with fewer than two)."""
        pts = self._pts
        return pts.t[-1] - pts.t[pts.head] if self._n > 1 else 0.0

    def _recompute(self, t0: float) -> None:
        self._t0 = t0
        st = sy = stt = sty = syy = 0.0
        pts = self._pts
        for i in range(pts.head, len(pts.t)):
            tc, y = pts.t[i] - t0, pts.v[i]
            st += tc
            sy += y
            stt += tc * tc
            sty += tc * y
            syy += y * y
        self._st, self._sy, self._stt, self._sty, self._syy = st, sy, stt, sty, syy

    def add(self, t: float, y: float) -> None:
        """Add the point ``(t, y)`` and drop the points that left the window."""
        if not self._n:
            self._pts.clear()
            self._recompute(t)
        pts, t0 = self._pts, self._t0
        ts, ys = pts.t, pts.v
        ts.append(t)
        ys.append(y)
        tc = t - t0
        # the running sums in locals, then stored once: the same operations in the same order
        st, sy, stt, sty, syy = self._st + tc, self._sy + y, self._stt + tc * tc, self._sty + tc * y, self._syy + y * y
        oldest, head = t - self.window_s, pts.head
        while ts[head] < oldest:  # drop the points that left the window
            tc, yo = ts[head] - t0, ys[head]
            st -= tc
            sy -= yo
            stt -= tc * tc
            sty -= tc * yo
            syy -= yo * yo
            head += 1
        self._st, self._sy, self._stt, self._sty, self._syy = st, sy, stt, sty, syy
        pts.head = head
        self._n = len(ts) - head
        pts.cut()  # memory only: the sums do not change
        if t - t0 > 2.0 * self.window_s:  # rebase: drop the drift, keep the times small
            self._recompute(pts.t[pts.head])

    def slope(self) -> float | None:
        """The least-squares slope (per second); ``None`` with fewer than two distinct times."""
        n = self._n
        if n < 2:
            return None
        sxx = self._stt - self._st * self._st / n
        return (self._sty - self._st * self._sy / n) / sxx if sxx > 0 else None

    def trend(self, at: float) -> tuple[float, float] | None:
        """The fitted line's ``(slope, value at at)``, without its spreads; ``None`` as :meth:`estimate`.

        The same floats as :meth:`estimate`'s ``slope`` and ``value``, for a
        caller that only needs the spreads when the line itself gets near
        something (the forecast's horizon).
        """
        n = self._n
        if n < 2:
            return None
        st, sy = self._st, self._sy
        sxx = self._stt - st * st / n
        if not sxx > 0:
            return None
        slope = (self._sty - st * sy / n) / sxx
        return slope, sy / n - slope * (st / n - (at - self._t0))

    def estimate(self, at: float, line: tuple[float, float] | None = None) -> LineEstimate | None:
        """The fitted line evaluated at time ``at``; ``None`` with fewer than two distinct times.

        Its slope is :meth:`slope`'s, to the bit, and its slope and value :meth:`trend`'s. ``line``: what
        :meth:`trend` returned for the same ``at`` with no point added since (not fitted again); ``None``: fit.
        """
        if line is None:
            line = self.trend(at)
        if line is None:
            return None
        slope, value = line
        n, st, sy = self._n, self._st, self._sy
        sxx, sxy = self._stt - st * st / n, self._sty - st * sy / n  # as trend's
        ssr = max(0.0, (self._syy - sy * sy / n) - slope * sxy)
        sigma = math.sqrt(ssr / (n - 2)) if n > 2 else 0.0
        return LineEstimate(n, self.span_s, slope, value, sigma, sxx, st / n - (at - self._t0))

    def snapshot(self) -> dict[str, Any]:
        """The live points, the anchor and the running sums as JSON-able data."""
        return {"points": self._pts.snapshot(), "anchor": self._t0,
                "sums": [self._st, self._sy, self._stt, self._sty, self._syy]}

    def restore(self, state: dict[str, Any] | list | None) -> None:
        """Put back the points of :meth:`snapshot` (and its sums: the same floats follow).

        A list of ``[t, y]`` pairs (the checks' layout before the running
        fit) is read too; its sums are recomputed.
        """
        if isinstance(state, list):
            state = {"points": {"t": [p[0] for p in state], "v": [p[1] for p in state]}}
        state = state or {}
        self._pts = TimedColumns.restored(state.get("points"))
        self._n = len(self._pts)
        sums = state.get("sums")
        if sums is not None and len(sums) == 5 and "anchor" in state:
            self._t0 = float(state["anchor"])
            self._st, self._sy, self._stt, self._sty, self._syy = (float(v) for v in sums)
        else:
            self._recompute(self._pts.t[0] if self._n else 0.0)

    def points(self) -> list[tuple[float, float]]:
        """The live points, oldest first."""
        pts = self._pts
        return list(zip(pts.t[pts.head:], pts.v[pts.head:]))
