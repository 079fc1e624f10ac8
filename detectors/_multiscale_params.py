"""The parameters of :class:`~detectors.multiscale_novelty.MultiScaleNoveltyDetector`, checked.

River keeps every ``__init__`` argument as an attribute of the same name
(``clone`` rebuilds the detector from them); :func:`store_params` does so,
with the sequences normalised to tuples of ints / floats and the views'
block lengths, offsets, context slots and alarm band checked.
"""

from __future__ import annotations

from typing import Any

from detectors._top_band import alarm_band

__all__ = ["store_params", "view_steps", "context_slot_pair"]


def store_params(det, args: dict[str, Any]) -> None:
    """Set every ``__init__`` argument of ``args`` (``locals()``, ``self`` left out) on ``det``, normalised.

    ``ValueError`` for steps / offsets that do not pair up or a ``context_slots`` that is not one
    number or a pair.
    """
    for name, value in args.items():
        if name != "self":
            setattr(det, name, value)
    det.steps, det.offsets = view_steps(args["steps"], args["offsets"])
    det.resolutions = tuple((int(l), int(k)) for l, k in args["resolutions"])
    det.season_resolutions = tuple((int(l), int(k)) for l, k in args["season_resolutions"])
    season_views = args["season_views"]
    det.season_views = None if season_views is None else tuple(int(v) for v in season_views)
    det.context_slots = context_slot_pair(args["context_slots"])
    det.shape_tiebreak = float(args["shape_tiebreak"])
    det.alarm_band = alarm_band(args["alarm_band"])


def view_steps(steps, offsets) -> tuple[tuple[int, ...], tuple[float, ...]]:
    """``(steps, offsets)`` as int / float tuples; ``ValueError`` unless they pair up and steps are ``>= 1``.

    >>> view_steps([1, 6.0], (0, -0.1))
    ((1, 6), (0.0, -0.1))
    >>> view_steps((1, 6), (0.0,))
    Traceback (most recent call last):
    ...
    ValueError: steps and offsets: same non-zero length, steps >= 1
    """
    steps = tuple(int(s) for s in steps)
    offsets = tuple(float(o) for o in offsets)
    if len(steps) != len(offsets) or not steps or min(steps) < 1:
        raise ValueError("steps and offsets: same non-zero length, steps >= 1")
    return steps, offsets


def context_slot_pair(context_slots) -> tuple[int, int]:
    """``(raw views' slots, coarse views' slots)`` from one number or a pair.

    >>> context_slot_pair(4093), context_slot_pair([8191, 4093.0])
    ((4093, 4093), (8191, 4093))
    """
    slots = tuple(context_slots) if isinstance(context_slots, (tuple, list)) else (context_slots,) * 2
    if len(slots) != 2:
        raise ValueError("context_slots: one number, or (raw views', coarse views')")
    return int(slots[0]), int(slots[1])
