"""Timed values in two flat columns: the bounded windows of the rule checks.

:class:`TimedColumns` keeps ``(t, value)`` pairs in two ``array('d')``
(16 bytes a pair, no Python object per pair) with a ``head`` index before
which the pairs have expired. Expired pairs are cut off once there are as
many as live ones (O(1) amortised), so a window never holds more than about
twice its live pairs. Its snapshot writes the times as offsets from the
first one when that round-trips exactly (shorter JSON; whole seconds as
integers), else as they are.
"""

from __future__ import annotations

from array import array
from typing import Any

__all__ = ["TimedColumns"]

#: fewest expired pairs before they are cut off
_MIN_CUT = 16


class TimedColumns:
    """``(t, value)`` pairs, oldest first, the first ``head`` of them expired.

    Examples
    --------
    >>> c = TimedColumns()
    >>> for i in range(40):
    ...     c.append(1.8e9 + 60.0 * i, 0.5)
    >>> c.head = 30
    >>> c.cut(), len(c), c.t[c.head]
    (30, 10, 1800001800.0)
    >>> TimedColumns.restored(c.snapshot()).snapshot() == c.snapshot()
    True
    """

    __slots__ = ("t", "v", "head")

    def __init__(self) -> None:
        self.t = array("d")
        self.v = array("d")
        self.head = 0

    def __len__(self) -> int:
        return len(self.t) - self.head

    def append(self, t: float, v: float) -> None:
        self.t.append(t)
        self.v.append(v)

    def clear(self) -> None:
        del self.t[:], self.v[:]
        self.head = 0

    def cut(self) -> int:
        """Drop the expired pairs if they are a quarter of the live ones; returns how many went (indices shift)."""
        head = self.head
        if head < _MIN_CUT or 4 * head < len(self.t) - head:
            return 0
        del self.t[:head], self.v[:head]
        self.head = 0
        return head

    def snapshot(self) -> dict[str, Any]:
        """The live pairs as JSON-able data."""
        ts, vs = self.t[self.head:], self.v[self.head:].tolist()
        if ts:
            t0 = ts[0]
            dt = [t - t0 for t in ts]
            if all(t0 + d == t for d, t in zip(dt, ts)):  # whole seconds without ".0": shorter JSON
                return {"t0": t0, "dt": [int(d) if d.is_integer() else d for d in dt], "v": vs}
        return {"t": ts.tolist(), "v": vs}

    @classmethod
    def restored(cls, state: dict[str, Any] | None) -> "TimedColumns":
        """Columns from :meth:`snapshot` data (the live pairs; ``head`` 0)."""
        state = state or {}
        c = cls()
        if "dt" in state:
            t0 = float(state["t0"])
            c.t = array("d", (t0 + float(d) for d in state["dt"]))
        else:
            c.t = array("d", (float(t) for t in state.get("t", [])))
        c.v = array("d", (float(v) for v in state.get("v", [])))
        if len(c.t) != len(c.v):
            raise ValueError("timed columns: as many times as values are needed")
        return c
