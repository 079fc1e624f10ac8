"""Snapshot and restore of :class:`~detectors.context_novelty.ContextNoveltyDetector`.

The JSON state of one detector (a view of ``multiscale_novelty``), and its
restore, which also reads the formats of older snapshots: plain lists
instead of packed arrays, no base rate, no range window, no seasonal
contexts, key lists instead of bounded-set snapshots, a running mean made
inf / NaN by a reading beyond float32's range, the seasonal warm-up values as
``float64`` (rounded to ``float32``, as the warm-up keeps them since session 11).
"""

from __future__ import annotations

import math
from array import array
from typing import Any

import numpy as np

from detectors._packed import pack, unpack

__all__ = ["context_snapshot", "context_restore"]


def context_snapshot(det) -> dict[str, Any]:
    """The JSON-ready state of the context detector ``det``."""
    return {
        "min": None if det._min == math.inf else det._min,
        "max": None if det._max == -math.inf else det._max,
        "hist": det._contexts.history(),
        "seen": det._contexts.seen_state(),
        "mean": det._mean,
        "var": det._var,
        "quiet": det._quiet,
        "score": det._score,
        "base": det._base,
        "chunks": pack(np.asarray(det._chunks, dtype=np.float64).reshape(-1, 2)),
        "open": None if det._open is None else list(det._open),
        "s_buf": None if det._s_buf is None else pack(np.asarray(det._s_buf, dtype=np.float32)),
        "period": det._period,
        # (a view without seasonal contexts writes none)
        "s_hist": [pack(np.asarray(h, dtype=np.int8)) for h in det._s_hist] if det.season_warmup else [],
        "s_seen": [x.snapshot() for x in det._s_seen] if det.season_warmup else [],
        "s_base": det._s_base,
        "s_count": det._s_count,
    }


def context_restore(det, state: dict[str, Any]) -> None:
    """Set the context detector ``det`` to ``state`` (:func:`context_snapshot`, or an older format)."""
    det._cache = None
    det._min = math.inf if state["min"] is None else float(state["min"])
    det._max = -math.inf if state["max"] is None else float(state["max"])
    det._contexts.restore(state["hist"], state["seen"])
    # a running mean or variance made inf / NaN by a reading beyond float32's range
    # (snapshots from before readings were held within it, see model_value) restarts
    mean, var = state["mean"], float(state["var"])
    det._mean = None if mean is None or not math.isfinite(float(mean)) else float(mean)
    det._var = var if math.isfinite(var) and det._mean is not None else 0.0
    det._quiet = int(state["quiet"])
    det._score = float(state["score"])
    det._base = float(state.get("base", 1.0))
    chunks = state.get("chunks", [])
    det._chunks = [[float(a), float(b)] for a, b in (chunks if isinstance(chunks, list) else unpack(chunks))]
    op = state.get("open")
    det._open = None if op is None else [float(op[0]), float(op[1]), int(op[2])]
    if "period" in state:
        sb = state.get("s_buf")
        # float32 values (a float64 pack or list, written before session 11, rounded to them)
        values = None if sb is None else (sb if isinstance(sb, list) else unpack(sb).tolist())
        det._s_buf = None if values is None else array("f", [float(a) for a in values])
        det._period = int(state["period"])
        if state["s_hist"]:
            det._s_hist = [[int(q) for q in (h if isinstance(h, list) else unpack(h))] for h in state["s_hist"]]
        else:
            det._s_hist = [[] for _ in det.season_resolutions]
        for seen in det._s_seen:
            seen.restore([])
        for seen, keys in zip(det._s_seen, state["s_seen"]):
            seen.restore(keys)  # a snapshot, or the key lists of older snapshots
        det._s_base = float(state["s_base"])
        det._s_count = int(state.get("s_count", 0))
    det._closed = (
        (min(c[0] for c in det._chunks), max(c[1] for c in det._chunks)) if det._chunks else None
    )
