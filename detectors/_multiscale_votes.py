"""The votes outside the views of :class:`~detectors.multiscale_novelty.MultiScaleNoveltyDetector`.

Builds the short and the long shape votes (:class:`~detectors._shape.ShapeNovelty`,
:class:`~detectors._block_shape.BlockShapeNovelty`) from the detector's
parameters, gives their offsets (which depend on whether a seasonal view has
found the period), and reads one reading's value.
"""

from __future__ import annotations

from typing import Any

from detectors._block_shape import BlockShapeNovelty
from detectors._shape import ShapeNovelty
from detectors.base import MODEL_VALUE_LIMIT as _LIMIT, model_value

__all__ = ["shape_votes", "shape_offsets", "reading"]


def shape_votes(det) -> tuple[ShapeNovelty | None, BlockShapeNovelty | None]:
    """The short and the long shape votes of ``det`` (``None``: turned off)."""
    short = (
        ShapeNovelty(window=det.shape_window, recent=det.shape_recent, reservoir=det.shape_reservoir,
                     stride=det.shape_stride, scale=det.shape_scale, record_decay=det.shape_record_decay)
        if det.shape_window else None
    )
    long = (
        BlockShapeNovelty(step=det.shape_long_step, window=det.shape_long_window, recent=det.shape_long_recent,
                          reservoir=det.shape_long_reservoir, stride=det.shape_long_stride, scale=det.shape_scale,
                          warmup=det.shape_long_warmup, record_decay=det.shape_record_decay)
        if det.shape_long_step else None
    )
    return short, long


def shape_offsets(det) -> tuple[float, float]:
    """The short and the long shape votes' offsets.

    Short: ``shape_periodic_offset`` once a seasonal view knows the period,
    else ``shape_offset``; long: ``shape_long_offset``, or (``None``) the short one's.
    """
    seasonal = det._seasonal
    short = det.shape_offset
    if seasonal is not None and seasonal._period and det.shape_periodic_offset is not None:
        short = det.shape_periodic_offset
    return short, short if det.shape_long_offset is None else det.shape_long_offset


def reading(x: Any, field: str) -> float | None:
    """:func:`~detectors.base.model_value`, with a short cut for the usual float within its limit.

    >>> reading({"value": 2.5}, "value"), reading({"value": 2}, "value"), reading({}, "value")
    (2.5, 2.0, None)
    """
    v = x.get(field) if type(x) is dict else None
    return v if type(v) is float and -_LIMIT <= v <= _LIMIT else model_value(x, field)
