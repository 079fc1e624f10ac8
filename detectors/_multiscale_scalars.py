"""The multi-scale detector's scalars as one packed ``float64`` array (session 11, 2026-12-05).

Written as JSON, the ~60 numbers of a default snapshot (each view's range,
running mean and variance, rest counter, base rates; the flat-run record; the
shape votes' counters and records) cost ~2.2 KB: a key and up to 20 digits
each. :func:`compact` moves them into one packed array (:mod:`detectors._packed`,
~1 KB less; the order of its elements is :func:`scalar_fields`, names in
code), and the views' last context symbols (up to 18 a view) into one packed
``int8`` array (``hist``: per view the number of resolutions, then per
resolution the number of symbols and the symbols; ~150 bytes less). A
snapshot can still be read: :func:`readable` gives it as a dict with every
scalar under its name, the form snapshots had before (which
:func:`~detectors._multiscale_state.multiscale_restore` reads, so older
snapshots restore as they are).

Every value round-trips exactly: floats are ``float64``, counters are whole
numbers below ``2**53``, the shape votes' 64-bit generator state is two
32-bit halves, ``None`` (no reading yet, no open chunk, a vote turned off)
is NaN.

>>> from detectors.multiscale_novelty import MultiScaleNoveltyDetector
>>> det = MultiScaleNoveltyDetector()
>>> for t in range(300):
...     _ = det.score_learn_one({"value": t % 7})
>>> state = det.snapshot()
>>> state["scalars"].split("/")[0]
'float64:71'
>>> readable(state)["views"][0]["max"], readable(state)["flat"]["record"]
(6.0, 1)
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from detectors._packed import pack, unpack

__all__ = ["DETECTOR_FIELDS", "SHAPE_FIELDS", "VIEW_FIELDS", "scalar_fields", "compact", "readable"]

#: the detector's own scalars (``flat_*``: the flat-run vote, ``long_*``: the long shape vote's open block)
DETECTOR_FIELDS = ("quiet", "score", "alarms", "flat_last", "flat_run", "flat_record", "flat_fired",
                   "long_sum", "long_count", "long_blocks")
#: a shape vote's scalars (``rng_high`` / ``rng_low``: its generator's 64-bit state)
SHAPE_FIELDS = ("z_top", "offered", "rng_high", "rng_low", "n", "computed", "record", "score")
#: a view's scalars (``open_*``: its open range chunk; ``block_*``: the readings of its open block)
VIEW_FIELDS = ("min", "max", "mean", "var", "quiet", "score", "base", "open_min", "open_max", "open_count",
               "period", "s_base", "s_count", "block_sum", "block_count")

#: fields kept as ``int`` in the named form, and those that may be ``None`` (NaN when packed)
_WHOLE = {"quiet", "flat_run", "flat_record", "long_count", "long_blocks", "offered", "n", "computed",
          "open_count", "period", "s_count", "block_count"}
_NULLABLE = {"min", "max", "mean", "flat_last", "open_min", "open_max", "open_count"}
#: the snapshot's keys of a view's and a shape vote's scalars (the others are arrays, kept as they are)
_VIEW_KEYS = ("min", "max", "mean", "var", "quiet", "score", "base", "open", "period", "s_base", "s_count")
_SHAPE_KEYS = ("z_top", "offered", "rng", "n", "computed", "record", "score")


def scalar_fields(views: int) -> tuple[str, ...]:
    """The names of the packed array's elements, in order, for a detector of ``views`` views.

    >>> scalar_fields(1)[:3], scalar_fields(3)[-1], len(scalar_fields(3))
    (('quiet', 'score', 'alarms'), 'view2_block_count', 71)
    """
    return (DETECTOR_FIELDS + tuple(f"shape_{f}" for f in SHAPE_FIELDS)
            + tuple(f"long_shape_{f}" for f in SHAPE_FIELDS)
            + tuple(f"view{k}_{f}" for k in range(views) for f in VIEW_FIELDS))


def _number(value: Any) -> float:
    return math.nan if value is None else float(value)


def _shape_values(shape: dict[str, Any] | None) -> list[float]:
    if shape is None:
        return [math.nan] * len(SHAPE_FIELDS)
    rng = int(shape["rng"])
    return [_number(shape["z_top"]), _number(shape["offered"]), float(rng >> 32), float(rng & 0xFFFFFFFF),
            *(_number(shape[k]) for k in ("n", "computed", "record", "score"))]


def compact(state: dict[str, Any]) -> dict[str, Any]:
    """``state`` (a snapshot in the named form, :func:`readable`) with its scalars in one packed array."""
    flat, long = state["flat"], state["shape_long"]
    values = [_number(state[k]) for k in ("quiet", "score", "alarms")]
    values += [_number(flat["last"]), _number(flat["run"]), _number(flat["record"]), float(bool(flat["fired"]))]
    values += [_number(long["sum"]), _number(long["count"]), _number(long["blocks"])] if long else [math.nan] * 3
    values += _shape_values(state["shape"]) + _shape_values(long and long["shape"])
    views, symbols = [], []
    for view, block_sum, block_count in zip(state["views"], state["sums"], state["counts"]):
        symbols.append(len(view["hist"]))  # the number of resolutions, then each one's symbols after their number
        for hist in view["hist"]:
            symbols += [len(hist), *hist]
        values += [_number(view[k]) for k in ("min", "max", "mean", "var", "quiet", "score", "base")]
        values += list(map(float, view["open"])) if view["open"] is not None else [math.nan] * 3
        values += [_number(view[k]) for k in ("period", "s_base", "s_count")] + [float(block_sum), float(block_count)]
        views.append({k: v for k, v in view.items() if k not in _VIEW_KEYS and k != "hist"})

    def arrays(shape: dict[str, Any] | None) -> dict[str, Any] | None:
        return None if shape is None else {k: v for k, v in shape.items() if k not in _SHAPE_KEYS}

    small = all(-128 <= q <= 127 for q in symbols)
    return {"scalars": pack(np.array(values, dtype=np.float64)),
            "hist": pack(np.array(symbols, dtype=np.int8 if small else np.int64)),
            "views": views, "shape": arrays(state["shape"]),
            "shape_long": None if long is None else {"shape": arrays(long["shape"])}}


def _value(name: str, x: float) -> Any:
    """A packed element as the named form has it: a whole number as ``int``, NaN as ``None`` where allowed."""
    if math.isnan(x) and name in _NULLABLE:
        return None
    return int(x) if name in _WHOLE and math.isfinite(x) else x


def readable(state: dict[str, Any]) -> dict[str, Any]:
    """The snapshot ``state`` with every scalar under its name (a snapshot without packed scalars as it is)."""
    if "scalars" not in state:
        return state
    x = unpack(state["scalars"]).tolist()
    if len(x) != len(scalar_fields(len(state["views"]))):
        raise ValueError(f"{len(x)} scalars for {len(state['views'])} views")
    named = {name: _value(_field(name), v) for name, v in zip(scalar_fields(len(state["views"])), x)}

    def shape(prefix: str, arrays: dict[str, Any] | None) -> dict[str, Any] | None:
        if arrays is None:
            return None
        f = {k: named[prefix + k] for k in SHAPE_FIELDS}
        return {**arrays, "z_top": f["z_top"], "offered": f["offered"],
                "rng": (int(f["rng_high"]) << 32) | int(f["rng_low"]),
                "n": f["n"], "computed": f["computed"], "record": f["record"], "score": f["score"]}

    views, sums, counts = [], [], []
    symbols = _Symbols(unpack(state["hist"]).tolist())
    for k, arrays in enumerate(state["views"]):
        f = {name: named[f"view{k}_{name}"] for name in VIEW_FIELDS}
        op = None if f["open_count"] is None else [f["open_min"], f["open_max"], f["open_count"]]
        hist = [[next(symbols) for _ in range(next(symbols))] for _ in range(next(symbols))]
        views.append({**{key: f.get(key) for key in _VIEW_KEYS if key != "open"}, "open": op, "hist": hist,
                      **arrays})
        sums.append(f["block_sum"])
        counts.append(f["block_count"])
    long = state["shape_long"]
    return {
        "views": views, "sums": sums, "counts": counts,
        "quiet": named["quiet"], "score": named["score"], "alarms": named["alarms"],
        "flat": {"last": named["flat_last"], "run": named["flat_run"], "record": named["flat_record"],
                 "fired": bool(named["flat_fired"])},
        "shape": shape("shape_", state["shape"]),
        "shape_long": None if long is None else {"sum": named["long_sum"], "count": named["long_count"],
                                                 "blocks": named["long_blocks"],
                                                 "shape": shape("long_shape_", long["shape"])},
    }


class _Symbols:
    """The views' packed context symbols, read in order; a ``ValueError`` once they run out (a truncated
    ``hist``), where a bare iterator would raise ``StopIteration`` with no message."""

    def __init__(self, values: list[int]) -> None:
        self._values, self._at = values, 0

    def __next__(self) -> int:
        if self._at >= len(self._values):
            raise ValueError(f"the views' context symbols end after {len(self._values)} values (a truncated hist)")
        self._at += 1
        return self._values[self._at - 1]


def _field(name: str) -> str:
    """The field of a packed element's name (``view2_s_count`` -> ``s_count``, ``shape_n`` -> ``n``)."""
    for prefix in ("long_shape_", "shape_"):
        if name.startswith(prefix):
            return name[len(prefix):]
    if name.startswith("view"):
        return name.split("_", 1)[1]
    return name
