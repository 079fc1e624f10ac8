"""Shape novelty of block means: the long window of the default detector's multi-resolution shape vote.

:class:`~detectors._shape.ShapeNovelty` over raw readings sees shapes of a
few dozen readings; a daily cycle of 96-288 readings with a wrong shape (a
stretched or missing peak, a phase jump) spans several such windows, each of
which may look ordinary. :class:`BlockShapeNovelty` feeds the same discord
score with the means of consecutive blocks of ``step`` readings, so that a
window of ``w`` blocks covers ``w * step`` readings at the cost of ``w``
numbers (a second resolution of the same score; the buffer and reservoir are
counted in blocks, so the state stays capped).

Between two blocks the score is held; a block's score is computed on the
reading that completes it, before that reading is learnt (strictly causal).
A reading not strictly within float32's range
(:data:`~detectors.base.MODEL_VALUE_LIMIT`, where the anomaly models hold
larger readings), inf or NaN counts as the mean of its block so far (or
the last block mean): it is no shape (see :mod:`detectors._shape`).

>>> import math
>>> det = BlockShapeNovelty(step=4, window=8, recent=32, reservoir=8, stride=2, warmup=4)
>>> for t in range(400):
...     v = math.sin(2 * math.pi * t / 64)
...     _ = det.score(v)
...     det.learn(v)
>>> det.blocks_learnt
100
"""

from __future__ import annotations

from math import isfinite
from typing import Any

from detectors._shape import ShapeNovelty
from detectors.base import MODEL_VALUE_LIMIT as _LIMIT

__all__ = ["BlockShapeNovelty"]


class BlockShapeNovelty:
    """:class:`~detectors._shape.ShapeNovelty` fed with the means of blocks of ``step`` readings.

    Parameters are those of :class:`~detectors._shape.ShapeNovelty` (``window``,
    ``recent``, ``reservoir`` and ``stride`` counted in blocks, ``warmup`` in
    computations) plus ``step``, the readings per block.
    """

    def __init__(self, step: int = 8, window: int = 32, recent: int = 96, reservoir: int = 32, stride: int = 4,
                 scale: float = 0.2, warmup: int = 20, record_decay: float = 1.0, seed: int = 1) -> None:
        if step < 1:
            raise ValueError("block shape novelty: step >= 1")
        self.step = int(step)
        self._shape = ShapeNovelty(window=window, recent=recent, reservoir=reservoir, stride=stride,
                                   scale=scale, warmup=warmup, record_decay=record_decay, seed=seed)
        self._sum = 0.0  # sum and number of the readings of the open block
        self._count = 0
        self.blocks_learnt = 0

    def clone(self) -> "BlockShapeNovelty":
        """A fresh instance with the same parameters."""
        fresh = object.__new__(type(self))
        fresh.step, fresh._shape = self.step, self._shape.clone()
        fresh._sum, fresh._count, fresh.blocks_learnt = 0.0, 0, 0
        return fresh

    @property
    def held(self) -> float:
        """The score of the last completed block (what :meth:`score` gives until the next one;
        a caller may read ``_shape._score`` itself while ``_count + 1 < step``)."""
        return self._shape._score

    def score(self, v: float) -> float:
        """Score with reading ``v`` (not learnt): computed when ``v`` completes a block, else held."""
        if self._count + 1 < self.step:
            return self._shape._score
        if not -_LIMIT < v < _LIMIT:
            v = self._stand_in()
        mean = (self._sum + v) / (self._count + 1)
        return self._shape.score(mean) if isfinite(mean) else self._shape._score

    def learn(self, v: float) -> None:
        """Learn reading ``v`` (after :meth:`score`)."""
        if not -_LIMIT < v < _LIMIT:
            v = self._stand_in()
        count = self._count + 1
        if count < self.step:
            self._sum += v
            self._count = count
            return
        mean = (self._sum + v) / count
        if isfinite(mean):
            self._shape.learn(mean)
            self.blocks_learnt += 1
        self._sum, self._count = 0.0, 0

    def _stand_in(self) -> float:
        """What a block counts for a reading not strictly within float32's range (or NaN): the
        mean of the block's readings so far, or the last block mean (its timing is kept: a
        block left out would shift the later ones, a phase jump of ``step`` readings)."""
        return self._sum / self._count if self._count else self._shape._held()

    def snapshot(self) -> dict[str, Any]:
        return {"sum": self._sum, "count": self._count, "blocks": self.blocks_learnt, "shape": self._shape.snapshot()}

    def restore(self, state: dict[str, Any]) -> None:
        self._shape.restore(state["shape"])
        self._sum, self._count = float(state["sum"]), int(state["count"])
        if not -_LIMIT * self.step < self._sum < _LIMIT * self.step:  # inf / NaN: a snapshot from before the guard
            self._sum = self._count * self._shape._held()
        self.blocks_learnt = int(state.get("blocks", 0))
