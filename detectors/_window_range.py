"""The quantisation range of a context detector over its last ``range_window`` readings.

The extremes are kept per chunk of ``range_window // range_chunks`` readings
(state on the detector: ``_chunk_len``, ``_chunks``, ``_open``, ``_closed``,
``_min`` / ``_max``), so the memory is constant and one old outlier stops
coarsening the grid once its chunk has left the window.
"""

from __future__ import annotations

__all__ = ["WindowRange"]


class WindowRange:
    """Mixin: :meth:`_window_range` learns one reading into the windowed min / max."""

    def _window_range(self, v: float) -> None:
        """Range = min / max of the open chunk and the last ``range_chunks`` closed ones."""
        o = self._open
        if o is not None and o[0] <= v <= o[1] and o[2] + 1 < self._chunk_len:
            o[2] += 1  # no new extreme, no chunk closes: same range
            return
        if o is None:
            o = self._open = [v, v, 0]
        if v < o[0]:
            o[0] = v
        if v > o[1]:
            o[1] = v
        o[2] += 1
        if o[2] >= self._chunk_len:
            self._chunks.append([o[0], o[1]])
            if len(self._chunks) > self.range_chunks:
                del self._chunks[0]
            self._open = None
            # extremes of the closed chunks: recomputed only when one closes
            self._closed = (min(c[0] for c in self._chunks), max(c[1] for c in self._chunks))
        lo, hi = o[0], o[1]
        closed = self._closed
        if closed is not None:
            if closed[0] < lo:
                lo = closed[0]
            if closed[1] > hi:
                hi = closed[1]
        self._min, self._max = lo, hi
