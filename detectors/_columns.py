"""Timed values in two flat columns: the bounded windows of the rule checks.

:class:`TimedColumns` keeps ``(t, value)`` pairs in two ``array('d')``
(16 bytes a pair, no Python object per pair) with a ``head`` index before
which the pairs have expired. Expired pairs are cut off once there are as
many as live ones (O(1) amortised), so a window never holds more than about
twice its live pairs. Its snapshot packs both columns (:mod:`detectors._packed`,
since session 11, 2026-12-05): the values as ``float64``, the times as the
differences of their ``float64`` bit patterns (``uint64``, wrapping: exact
for any time; readings at a steady interval differ by the same number, which
compresses to almost nothing). Written as JSON numbers (the times as offsets
from the first one, or as they are; both still restore) a window's length
followed its values' digits: a weather sensor fed unrounded values reached
24.5 KB, now at most 8 bytes of base85-encoded deflate a value.
"""

from __future__ import annotations

from array import array
from typing import Any

import numpy as np

from detectors._packed import pack, unpack

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
        """The live pairs as JSON-able data: ``{"t": packed time bit differences, "v": packed values}``."""
        bits = np.asarray(self.t, dtype=np.float64)[self.head:].view(np.uint64)
        values = np.asarray(self.v, dtype=np.float64)[self.head:]
        return {"t": pack(np.diff(bits, prepend=np.uint64(0))), "v": pack(values)}

    @classmethod
    def restored(cls, state: dict[str, Any] | None) -> "TimedColumns":
        """Columns from :meth:`snapshot` data (the live pairs; ``head`` 0)."""
        state = state or {}
        c = cls()
        if isinstance(state.get("t"), str):  # packed (since session 11)
            c.t = array("d", np.cumsum(unpack(state["t"]).astype(np.uint64), dtype=np.uint64).view(np.float64))
            c.v = array("d", unpack(state["v"]).astype(np.float64))
        else:  # JSON numbers: the times as offsets from the first one, or as they are
            t0 = float(state.get("t0", 0.0))
            c.t = array("d", (t0 + float(d) for d in state["dt"]) if "dt" in state else
                        (float(t) for t in state.get("t", [])))
            c.v = array("d", (float(v) for v in state.get("v", [])))
        if len(c.t) != len(c.v):
            raise ValueError("timed columns: as many times as values are needed")
        return c
