"""Snapshot and restore of :class:`~detectors.multiscale_novelty.MultiScaleNoveltyDetector`.

The scalars are packed in one array (:mod:`detectors._multiscale_scalars`,
since session 11; :func:`~detectors._multiscale_scalars.readable` names
them). The restore also reads older snapshots: every scalar under its name
(before session 11), without the alarm count, the flat-run vote, the short or
the long shape vote (those votes start afresh).
"""

from __future__ import annotations

from typing import Any

from detectors._multiscale_scalars import compact, readable
from detectors._multiscale_votes import shape_offsets

__all__ = ["multiscale_snapshot", "multiscale_restore"]


def multiscale_snapshot(det) -> dict[str, Any]:
    """The JSON-ready state of the multi-scale detector ``det`` (its scalars packed)."""
    return compact({
        "views": [v.snapshot() for v in det._views],
        "sums": list(det._sums),
        "counts": list(det._counts),
        "quiet": det._quiet,
        "score": det._score,
        "alarms": det._alarms,
        "flat": det._flat.snapshot(),
        "shape": None if det._shape is None else det._shape.snapshot(),
        "shape_long": None if det._long is None else det._long.snapshot(),
    })


def multiscale_restore(det, state: dict[str, Any]) -> None:
    """Set the multi-scale detector ``det`` to ``state`` (:func:`multiscale_snapshot`, or an older format)."""
    state = readable(state)
    for view, s in zip(det._views, state["views"]):
        view.restore(s)
    det._sums = [float(s) for s in state["sums"]]
    det._counts = [int(c) for c in state["counts"]]
    det._quiet = int(state["quiet"])
    det._score = float(state["score"])
    det._alarms = float(state.get("alarms", 0.0))
    det._flat.restore(state.get("flat"))  # absent in snapshots from before the flat-run vote
    det._offsets = shape_offsets(det)  # the views' periods are restored
    det._offsets_period = 0 if det._seasonal is None else det._seasonal._period
    if det._shape is not None:
        if state.get("shape"):
            det._shape.restore(state["shape"])
        else:  # a snapshot from before the shape vote: it starts afresh
            det._shape = det._shape.clone()
    if det._long is not None:
        if state.get("shape_long"):
            det._long.restore(state["shape_long"])
        else:  # a snapshot from before the long shape vote: it starts afresh
            det._long = det._long.clone()
