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
from array import array
from math import sqrt, tanh
from typing import Any

from detectors._bounded_keys import BoundedKeySet
from detectors._context_season import SeasonalContexts, above_base
from detectors._context_state import context_restore, context_snapshot
from detectors._contexts import ContextKeys
from detectors._window_range import WindowRange
from detectors.base import LearntScoreDetector, model_value

__all__ = ["ContextNoveltyDetector"]


class ContextNoveltyDetector(SeasonalContexts, WindowRange, LearntScoreDetector):
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
    range_growth
        ``None`` (default) or: a reading beyond the range by more than
        ``range_growth`` times its width widens it by only that much (it is
        learnt into the range as that bound; the running mean and variance
        take it as it is). One spike then no longer sets the quantisation
        grid, hiding every later change inside one or two bins, for the
        ``range_window`` (or for good); a lasting shift still widens the
        range, by a factor ``1 + range_growth`` a reading.
    season_warmup
        ``None`` (default) or the number of readings whose autocorrelation
        gives the period ``P`` (lag of the highest local peak above
        ``season_min_acf``, estimated once at the end of the warm-up; no
        peak: no seasonal contexts). Afterwards, for each ``(L, K)`` of
        ``season_resolutions``, the *seasonal* contexts "symbol ``P``
        readings ago (then the previous reading, ...) -> current symbol" are
        looked up as well, both with the readings one and two periods ago;
        a slot is new only if both are (an anomaly one period ago does not
        make today new). Their share of new slots, relative to its own base
        rate (``season_alpha``), is a second score of the reading
        (``+ season_offset``; or, if ``season_weight > 0``, ``season_weight``
        times it is added to the score), used once the seasonal contexts
        have been learnt for ``season_learn`` periods.

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
        range_growth: float | None = None,
        season_warmup: int | None = None,
        season_resolutions: tuple | list = ((4, 2), (8, 2)),
        season_offset: float = 0.0,
        season_min_acf: float = 0.3,
        season_alpha: float = 0.01,
        season_learn: int = 3,
        season_weight: float = 0.0,
        context_slots: int = 32749,
        context_generation_share: int = 8,
        season_slots: int = 4093,
    ) -> None:
        self.field = field
        self.context_slots = int(context_slots)
        self.context_generation_share = int(context_generation_share)
        self.season_slots = int(season_slots)
        self.season_warmup = int(season_warmup) if season_warmup else None
        self.season_resolutions = tuple((int(l), int(k)) for l, k in season_resolutions)
        self.season_offset = season_offset
        self.season_min_acf = season_min_acf
        self.season_alpha = season_alpha
        # warm-up values, float32 (half the snapshot bytes of float64; the period is the same)
        self._s_buf: array | None = array("f") if self.season_warmup else None
        self._period = 0  # 0: not (yet) seasonal
        self._s_hist: list[list[int]] = [[] for _ in self.season_resolutions]
        self._s_seen = [BoundedKeySet(self.season_slots, self.context_generation_share)
                        for _ in self.season_resolutions]
        self.season_learn = season_learn
        self.season_weight = season_weight
        self._s_count = 0  # readings learnt since the period is known
        self._s_base = 1.0
        self._s_n = sum(k for _, k in self.season_resolutions)
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
        self.range_growth = range_growth
        if range_window is not None and (int(range_window) < 1 or int(range_chunks) < 1):
            raise ValueError("range_window and range_chunks must be >= 1")
        self._chunk_len = max(1, int(range_window) // int(range_chunks)) if range_window else 0
        self._chunks: list[list[float]] = []  # [min, max] of the closed chunks (oldest first)
        self._open: list[float] | None = None  # [min, max, count] of the open chunk
        self._closed: tuple[float, float] | None = None  # min / max over self._chunks
        self._base = 1.0
        self._cache: tuple | None = None  # _evaluate() of the last score_one
        self._min = math.inf
        self._max = -math.inf
        self._contexts = ContextKeys(self.resolutions, self.context_slots, self.context_generation_share)
        self._mean: float | None = None
        self._var = 0.0
        # None, or another detector whose running mean / variance / range
        # measure this one's magnitude term (multiscale_novelty's coarse views
        # measure their block means in the readings' own deviations)
        self._magnitude_ref: ContextNoveltyDetector | None = None
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

    def _evaluate(self, v: float) -> tuple:
        """``(v, contexts, novelty, raw score, season keys, season novelty)`` of reading ``v``."""
        lo, hi, n = self._min, self._max, self._n_contexts
        contexts, known = self._contexts.look_up(v - lo, hi - lo) if hi > lo else self._contexts.look_up(0.0, 0.0)
        novelty = (n - known) / n
        share = above_base(novelty, self._base) if self.base_alpha > 0 else novelty
        # magnitude tie-breaker: distance to the running mean, in running deviations
        ref = self._magnitude_ref or self
        mean = ref._mean
        if mean is None:
            z = 0.0
        else:
            span = ref._max - ref._min if ref._max > ref._min else 1.0
            z = abs(v - mean) / (sqrt(ref._var) + 1e-3 * span + 1e-12)
        w = self.magnitude_weight
        distance = w * tanh(z / self.magnitude_scale)
        raw = (1.0 - w) * share + distance
        skeys = snov = None
        if self._period:
            skeys = self._season_keys(v)
            snov = self._season_novelty(skeys)
            if self._s_count >= self.season_learn * self._period:
                sn = above_base(snov, self._s_base)
                if self.season_weight > 0:
                    raw = min(1.0, raw + self.season_weight * sn)
                else:
                    raw = max(raw, (1.0 - w) * sn + distance + self.season_offset)
        if self.excursion_scale and hi > lo and (v > hi or v < lo):
            e = max(v - hi, lo - v, 0.0) / (hi - lo)
            if e > 0:
                raw = max(raw, min(1.0, 0.5 + 0.5 * e / self.excursion_scale))
        return v, contexts, novelty, raw, skeys, snov

    def _score_value(self, v: float) -> float:
        """:meth:`score_one` of the finite reading ``v``."""
        if self._quiet > 0:
            return 0.0
        # learn_one usually follows with the same reading: keep the look-ups
        self._cache = cache = self._evaluate(v)
        return cache[3]

    def _learn_value(self, v: float) -> None:
        """:meth:`learn_one` of the finite reading ``v``."""
        cache, self._cache = self._cache, None
        if cache is None or cache[0] != v:  # else nothing learnt since score_one(v)
            cache = self._evaluate(v)
        _, contexts, novelty, raw, skeys, snov = cache
        if self.base_alpha > 0:
            self._base += self.base_alpha * (novelty - self._base)
        if self.season_warmup:
            self._learn_season(v, skeys, snov)
        if self._quiet > 0:
            self._score = 0.0
            self._quiet -= 1
        else:
            self._score = raw
        if raw >= self.rest_threshold:
            self._quiet = self.rest_period
        self._contexts.learn(contexts)
        mean, alpha = self._mean, self.alpha
        if mean is None:
            self._mean = v
        else:
            d = v - mean
            self._mean = mean + alpha * d
            self._var = (1.0 - alpha) * (self._var + alpha * d * d)
        growth = self.range_growth
        if growth and self._max > self._min:
            bound = (self._max - self._min) * growth
            if v > self._max + bound:
                v = self._max + bound
            elif v < self._min - bound:
                v = self._min - bound
        if self._chunk_len:
            self._window_range(v)
        else:
            if v < self._min:
                self._min = v
            if v > self._max:
                self._max = v

    # -- River-style API -----------------------------------------------------

    def score_one(self, x: dict[str, float]) -> float:
        v = model_value(x, self.field)
        return self._score if v is None else self._score_value(v)

    def learn_one(self, x: dict[str, float]) -> None:
        v = model_value(x, self.field)
        if v is not None:
            self._learn_value(v)

    # -- state ---------------------------------------------------------------

    def snapshot(self) -> dict[str, Any]:
        return context_snapshot(self)

    def restore(self, state: dict[str, Any]) -> None:
        context_restore(self, state)
