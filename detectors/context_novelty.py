"""Contextual novelty detector (the views of the default `multiscale_novelty`).

An online, causal take on the idea behind CAD OSE (contextual anomaly
detection): quantise each reading, remember every *context* (the last ``k``
quantised readings followed by the current one) seen so far, and call a
reading anomalous in proportion to how many of its contexts are new. The
detector is cheap (a few set look-ups per reading) and needs no
model of the signal's shape: daily cycles, square waves and plateaus become
familiar contexts after they have been seen once.
"""

from __future__ import annotations

import math
from typing import Any

from detectors.base import AnomalyDetector, finite_value

__all__ = ["ContextNoveltyDetector"]


class ContextNoveltyDetector(AnomalyDetector):
    """Score = share of never-seen contexts over several quantisations.

    Each reading is quantised into ``L`` equal bins of the range seen so far
    (running min / max; readings outside the range get the bins ``-1`` /
    ``L``, which are new by construction), for every ``(L, K)`` of
    ``resolutions``. For each order ``k = 1..K`` the context "last ``k``
    symbols -> current symbol" is looked up in a set of contexts seen so far.
    The raw score is the share of contexts (over all resolutions and orders)
    that are new. A small share ``magnitude_weight`` of the score is the
    reading's distance to a slow exponentially weighted mean, in standard
    deviations ``z`` (``tanh(z / magnitude_scale)``): it ranks readings of
    equal novelty by how far off they are. After a score ``>= rest_threshold``
    the detector reports 0 for ``rest_period`` readings (one alarm per event,
    not one per reading).

    Parameters
    ----------
    field
        Name of the numeric field read from ``x``.
    resolutions
        ``(levels, max_order)`` pairs: number of quantisation bins and the
        longest context length used with them.
    rest_period
        Readings during which the detector stays silent after a high score.
    rest_threshold
        Raw score that starts a rest period.
    magnitude_weight
        Share of the score given to the distance from the running mean.
    magnitude_scale
        ``z`` at which the distance term reaches ``tanh(1)``.
    alpha
        Smoothing of the running mean and variance.
    base_alpha
        ``0`` (default) or the smoothing of the *base rate* of novelty: the
        share of new contexts is then read relative to its exponentially
        weighted mean ``b`` over the readings learnt so far (which starts at
        1: at first everything is new), ``(novelty - b) / (1 - b)``. A signal
        whose contexts keep being new (noise) needs more novelty to score
        high than one whose contexts have become familiar.
    excursion_scale
        ``None`` (default) or: a reading beyond the running range by ``e``
        times the range's width scores at least
        ``min(1, 0.5 + 0.5 * e / excursion_scale)`` (a new extreme well
        outside everything seen is anomalous whatever its contexts).
    range_window
        ``None`` (default: the range is every reading's min / max) or the
        number of recent readings whose min / max is the range. One early
        outlier then stops setting the quantisation grid (and hiding every
        later change inside one or two bins) once it is ``range_window``
        readings old. The extremes are kept per chunk of
        ``range_window // range_chunks`` readings, so the memory is constant.
    range_chunks
        Number of chunks ``range_window`` is tracked in.

    Examples
    --------
    >>> import random
    >>> from detectors.context_novelty import ContextNoveltyDetector
    >>> rng = random.Random(42)
    >>> det = ContextNoveltyDetector()
    >>> scores = []
    >>> for t in range(2000):
    ...     v = 10 * math.sin(2 * math.pi * t / 50) + rng.gauss(0, 0.5)
    ...     if t == 1500:
    ...         v = 40.0  # a spike far outside the usual range
    ...     x = {"value": v}
    ...     scores.append(det.score_one(x))
    ...     det.learn_one(x)
    >>> scores[1500] > 0.9
    True
    >>> max(scores[1000:1500]) < scores[1500]
    True
    >>> det.score_one({"other": 1.0}) == det.score_one({"value": float("nan")})
    True
    """

    def __init__(
        self,
        field: str = "value",
        resolutions: tuple | list = ((4, 8), (8, 5), (16, 3), (32, 2)),
        rest_period: int = 30,
        rest_threshold: float = 0.75,
        magnitude_weight: float = 0.1,
        magnitude_scale: float = 5.0,
        alpha: float = 0.001,
        base_alpha: float = 0.0,
        excursion_scale: float | None = None,
        range_window: int | None = None,
        range_chunks: int = 20,
    ) -> None:
        self.field = field
        self.resolutions = tuple((int(l), int(k)) for l, k in resolutions)
        self.rest_period = rest_period
        self.rest_threshold = rest_threshold
        self.magnitude_weight = magnitude_weight
        self.magnitude_scale = magnitude_scale
        self.alpha = alpha
        self.base_alpha = base_alpha
        self.excursion_scale = excursion_scale
        self.range_window = range_window
        self.range_chunks = range_chunks
        if range_window is not None and (int(range_window) < 1 or int(range_chunks) < 1):
            raise ValueError("range_window and range_chunks must be >= 1")
        self._chunk_len = max(1, int(range_window) // int(range_chunks)) if range_window else 0
        self._chunks: list[list[float]] = []  # [min, max] of the closed chunks (oldest first)
        self._open: list[float] | None = None  # [min, max, count] of the open chunk
        self._closed: tuple[float, float] | None = None  # min / max over self._chunks
        self._base = 1.0
        self._cache: tuple | None = None  # (value, keys, novelty, raw) of the last score_one
        self._min = math.inf
        self._max = -math.inf
        self._hist: list[list[int]] = [[] for _ in self.resolutions]
        self._seen: list[set[int]] = [set() for _ in self.resolutions]
        self._mean: float | None = None
        self._var = 0.0
        self._quiet = 0
        self._score = 0.0
        self._n_contexts = sum(k for _, k in self.resolutions)

    # -- internals -----------------------------------------------------------


    def _symbol(self, v: float, levels: int) -> int:
        lo, hi = self._min, self._max
        if not hi > lo:
            return 0
        q = int(math.floor((v - lo) * levels / (hi - lo)))
        return -1 if q < 0 else (levels if q > levels else q)

    def _keys(self, v: float) -> list[tuple[int, list[int]]]:
        """Per resolution: (symbol, context keys of orders 1..K)."""
        out = []
        for (levels, order), hist in zip(self.resolutions, self._hist):
            q = self._symbol(v, levels)
            base = levels + 3  # digits 1..levels+2 (symbols -1..levels shifted)
            h = q + 2
            keys = []
            for j in range(1, min(order, len(hist)) + 1):
                h = h * base + hist[-j] + 2
                keys.append(h)
            out.append((q, keys))
        return out

    def _novelty(self, keys: list[tuple[int, list[int]]]) -> float:
        """Share of the contexts that are new."""
        new = 0
        for (_, ks), (_, order), seen in zip(keys, self.resolutions, self._seen):
            new += order - len(ks)  # not enough history yet: new
            for k in ks:
                if k not in seen:
                    new += 1
        return new / self._n_contexts

    def _raw(self, v: float, keys: list[tuple[int, list[int]]], novelty: float | None = None) -> float:
        if novelty is None:
            novelty = self._novelty(keys)
        if self.base_alpha > 0:
            b = self._base
            novelty = max(0.0, (novelty - b) / (1.0 - b)) if b < 1.0 else 0.0
        if self._mean is None:
            z = 0.0
        else:
            span = self._max - self._min if self._max > self._min else 1.0
            z = abs(v - self._mean) / (math.sqrt(self._var) + 1e-3 * span + 1e-12)
        w = self.magnitude_weight
        raw = (1.0 - w) * novelty + w * math.tanh(z / self.magnitude_scale)
        if self.excursion_scale and self._max > self._min:
            e = max(v - self._max, self._min - v, 0.0) / (self._max - self._min)
            if e > 0:
                raw = max(raw, min(1.0, 0.5 + 0.5 * e / self.excursion_scale))
        return raw

    # -- River-style API -----------------------------------------------------

    def score_one(self, x: dict[str, float]) -> float:
        v = finite_value(x, self.field)
        if v is None:
            return self._score
        if self._quiet > 0:
            return 0.0
        keys = self._keys(v)
        novelty = self._novelty(keys)
        raw = self._raw(v, keys, novelty)
        # learn_one usually follows with the same reading: keep the look-ups
        self._cache = (v, keys, novelty, raw)
        return raw

    def learn_one(self, x: dict[str, float]) -> None:
        v = finite_value(x, self.field)
        if v is None:
            return
        cache, self._cache = self._cache, None
        if cache is not None and cache[0] == v:
            _, keys, novelty, raw = cache  # nothing learnt since score_one(v)
        else:
            keys = self._keys(v)
            novelty = self._novelty(keys)
            raw = self._raw(v, keys, novelty)
        if self.base_alpha > 0:
            self._base += self.base_alpha * (novelty - self._base)
        self._score = 0.0 if self._quiet > 0 else raw
        if self._quiet > 0:
            self._quiet -= 1
        if raw >= self.rest_threshold:
            self._quiet = self.rest_period
        for (q, ks), (_, order), hist, seen in zip(keys, self.resolutions, self._hist, self._seen):
            seen.update(ks)
            hist.append(q)
            if len(hist) > order:
                del hist[0]
        if self._mean is None:
            self._mean = v
        else:
            d = v - self._mean
            self._mean += self.alpha * d
            self._var = (1.0 - self.alpha) * (self._var + self.alpha * d * d)
        if self._chunk_len:
            self._window_range(v)
        else:
            if v < self._min:
                self._min = v
            if v > self._max:
                self._max = v

    def _window_range(self, v: float) -> None:
        """Range = min / max of the open chunk and the last ``range_chunks`` closed ones."""
        o = self._open
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

    # -- state ---------------------------------------------------------------

    def snapshot(self) -> dict[str, Any]:
        return {
            "min": None if self._min == math.inf else self._min,
            "max": None if self._max == -math.inf else self._max,
            "hist": [list(h) for h in self._hist],
            "seen": [sorted(s) for s in self._seen],
            "mean": self._mean,
            "var": self._var,
            "quiet": self._quiet,
            "score": self._score,
            "base": self._base,
            "chunks": [list(c) for c in self._chunks],
            "open": None if self._open is None else list(self._open),
        }

    def restore(self, state: dict[str, Any]) -> None:
        self._cache = None
        self._min = math.inf if state["min"] is None else float(state["min"])
        self._max = -math.inf if state["max"] is None else float(state["max"])
        self._hist = [list(h) for h in state["hist"]]
        self._seen = [set(s) for s in state["seen"]]
        self._mean = None if state["mean"] is None else float(state["mean"])
        self._var = float(state["var"])
        self._quiet = int(state["quiet"])
        self._score = float(state["score"])
        self._base = float(state.get("base", 1.0))
        self._chunks = [[float(a), float(b)] for a, b in state.get("chunks", [])]
        op = state.get("open")
        self._open = None if op is None else [float(op[0]), float(op[1]), int(op[2])]
        self._closed = (
            (min(c[0] for c in self._chunks), max(c[1] for c in self._chunks)) if self._chunks else None
        )
