"""Multi-scale contextual novelty: CityEye's default NAB-scored anomaly model.

Several :class:`~detectors.context_novelty.ContextNoveltyDetector` *views*
watch the same stream at different time scales: the raw readings, and the
means of consecutive blocks of ``step`` readings. A slow change of shape
(a daily cycle that flattens, a drift, a burst of activity spread over a
few readings) is often a new context at the coarse scale while every single
reading looks familiar; a spike is new at the raw scale. The score is the
highest (offset) view score; a shared rest period after a high score keeps
the views from reporting the same event twice.
"""

from __future__ import annotations

import math
from math import isfinite
from typing import Any

from detectors._flat_run import FlatRunRecord
from detectors._multiscale_params import store_params
from detectors._multiscale_state import multiscale_restore, multiscale_snapshot
from detectors._multiscale_views import build_views
from detectors._multiscale_votes import reading as _reading, shape_offsets, shape_votes
from detectors._top_band import score_reporter
from detectors.base import LearntScoreDetector

__all__ = ["MultiScaleNoveltyDetector"]


class MultiScaleNoveltyDetector(LearntScoreDetector):
    """Maximum of context-novelty scores at several time scales.

    View ``k`` is a :class:`~detectors.context_novelty.ContextNoveltyDetector`
    fed with the mean of each block of ``steps[k]`` consecutive readings
    (``1`` = every reading). A view scores once per block, on the reading
    that completes it; its score plus ``offsets[k]`` (a negative offset asks
    more of a coarse view), clipped to ``[0, 1]``, is that view's vote, and
    the detector's score is the highest vote. After a highest vote
    ``>= rest_threshold`` (an *alarm*) the detector reports 0 for ``rest_period``
    readings, whichever view fired (each view also rests ``view_rest``
    readings, in its own blocks, after its own high scores). Every view
    reads novelty relative to its own base rate, and the score is lowered a
    little for each recent alarm (see ``base_alpha`` and ``alarm_penalty``):
    both calibrate the score per sensor, causally. The 12-reading view also
    remembers what happens at each phase of the signal's period (a daily
    pattern that does not come is new there). The raw-reading view
    quantises against the range of the last ``range_window`` readings, so an
    old outlier stops coarsening its grid. One more vote, outside the
    views, is 1 when a run of exactly identical readings grows past the
    sensor's record (a stuck or switched-off sensor; see
    :class:`~detectors._flat_run.FlatRunRecord`).

    Two more votes are the *shape* of the last readings at two resolutions:
    how far the window of the last 32 readings, and that of the last 32
    means of 8 readings, are from every earlier one (a missing peak, a
    stretched cycle at normal values; see :class:`~detectors._shape.ShapeNovelty`
    and :class:`~detectors._block_shape.BlockShapeNovelty`).

    Each reading is scored, then learnt; the score at a reading only uses the
    readings up to it. The state is capped by construction whatever the
    signal: the context sets are slots in two generations, the shape vote a
    fixed buffer and reservoir.

    Parameters
    ----------
    field
        Name of the numeric field read from ``x``.
    steps
        Block length (readings) of each view.
    offsets
        Added to each view's score before taking the maximum.
    rest_period
        Readings during which the detector reports 0 after a high score.
    rest_threshold
        Highest vote (before the alarm penalty) that starts a rest period
        and counts as an alarm.
    view_rest
        Rest of each view after its own high score, in readings (divided by
        the view's block length).
    resolutions
        ``(levels, max_order)`` pairs of every view (see
        :class:`~detectors.context_novelty.ContextNoveltyDetector`).
    base_alpha
        Every view reads its share of new contexts relative to its own
        running base rate of novelty, smoothed with ``base_alpha`` (see
        :class:`~detectors.context_novelty.ContextNoveltyDetector`): a
        per-sensor calibration, so that a noisy sensor needs more novelty
        than a regular one to score high.
    excursion_scale
        The raw-reading views (block length 1) also score a reading beyond
        the running range by ``e`` range widths at least
        ``min(1, 0.5 + 0.5 * e / excursion_scale)``; ``None`` turns it off.
    alarm_penalty, alarm_memory
        Each vote that starts a rest period counts as an alarm; the score is
        lowered by ``alarm_penalty`` times the number of alarms, discounted
        with time constant ``alarm_memory`` readings (a sensor that keeps
        alarming needs a higher score to alarm again).
    range_window, range_chunks
        The raw-reading views (block length 1) quantise against the min /
        max of the last ``range_window`` readings (tracked in
        ``range_chunks`` chunks; see
        :class:`~detectors.context_novelty.ContextNoveltyDetector`) instead
        of every reading's: an old outlier stops coarsening the grid once it
        has left the window. ``None``: every reading's min / max.
    range_growth
        Every view's range widens by at most ``range_growth`` times its
        width a reading (see
        :class:`~detectors.context_novelty.ContextNoveltyDetector`): one
        spike no longer blinds the views for the range window (the raw
        view) or for good (the coarse views). ``None``: no limit.
    magnitude_alpha
        Each view's score has a small tie-breaker, the distance of its
        value to a running mean in running standard deviations. View ``k``
        updates that mean / variance with ``magnitude_alpha * steps[k]`` per
        block, so every view's statistics cover about ``1 / magnitude_alpha``
        readings (with one constant per block the coarse views' variance
        would still be building up after thousands of readings, and every
        coarse alarm would look equally far off).
    magnitude_weight, magnitude_scale
        Share of the raw-reading views' score given to the tie-breaker
        ``tanh(z / magnitude_scale)``. With 0.3, a never-seen reading at
        the running mean scores 0.7, below ``rest_threshold``: at the raw
        scale a reading must be new *and* off the mean to alarm (on NAB the
        raw view's false alarms were mostly close to the mean).
    coarse_magnitude_weight, coarse_magnitude_scale
        The same for the views on block means.
    coarse_magnitude_in_readings
        The coarse views measure their block mean's ``z`` against the
        readings' running mean and standard deviation (the first raw view's)
        instead of their own block-mean statistics.
    flat_min_run, flat_margin
        The flat-run vote: 1 when the current run of identical readings
        reaches ``flat_min_run`` readings and exceeds ``1 + flat_margin``
        times the longest run completed so far (once per run);
        ``flat_min_run=None`` turns it off.
    shape_window, shape_recent, shape_reservoir, shape_stride, shape_scale, shape_offset
        The shape vote (:class:`~detectors._shape.ShapeNovelty`): the
        z-normalised distance of the last ``shape_window`` readings to the
        nearest earlier window among the last ``shape_recent`` and a seeded
        reservoir of ``shape_reservoir`` older ones, computed every
        ``shape_stride`` readings, scored against the sensor's record
        distance (``shape_scale``), plus ``shape_offset``.
        ``shape_window=None`` turns it off.
    shape_periodic_offset
        ``None`` or the shape vote's offset once a seasonal view has found
        the signal's period (autocorrelation peak above ``season_min_acf``): a
        strongly periodic signal, whose windows repeat, is where a window
        unlike every earlier one means most, and there a record-breaking
        shape may reach the other views' top score (on the synthetic shape
        suite 72.5 % against 62.5 % with ``None``; NAB 71.0 / 62.1 against
        71.1 / 62.3).
    shape_record_decay
        The shape vote's record distance is multiplied by this at every
        computation (1: kept for ever; see :class:`~detectors._shape.ShapeNovelty`).
    shape_long_step, shape_long_window, shape_long_recent, shape_long_reservoir, shape_long_stride, shape_long_warmup
        The *long* shape vote, a second resolution of the same score
        (:class:`~detectors._block_shape.BlockShapeNovelty`): windows of
        ``shape_long_window`` means of blocks of ``shape_long_step``
        readings (32 x 8 = 256 readings by default, a daily cycle of 5-minute
        readings), among the last ``shape_long_recent`` blocks and a
        reservoir of ``shape_long_reservoir`` older windows, computed every
        ``shape_long_stride`` blocks, scoring after ``shape_long_warmup``
        computations. ``shape_long_step=None`` turns it off.
    shape_long_offset
        The long shape vote's offset; ``None``: the short one's (``shape_offset``
        or ``shape_periodic_offset``).
    shape_tiebreak
        A top vote (1, the clip) is reported as ``1 - shape_tiebreak * (1 -
        s)``, ``s`` the highest shape score (short or long, before offsets):
        among the readings that reach the top, the one least like any
        earlier window ranks first (the hold-out's metric takes the highest
        score of a series). Rest periods and alarms are as without it.
    alarm_band
        ``(lo, hi)``: a vote in ``[lo, 1)`` is reported within ``[lo, hi)``,
        and the top votes carry no alarm penalty, so they outrank every
        ordinary alarm (see :mod:`detectors._top_band`); ``None``: no band.
    context_slots, context_generation_share, season_slots
        The views' context sets are capped by construction
        (:class:`~detectors._bounded_keys.BoundedKeySet`): ``context_slots``
        slots for the raw views and for the coarse views (one number: both),
        a generation ending at ``1 / context_generation_share`` of them;
        ``season_slots`` per seasonal grid. By default the raw view has twice
        a coarse view's slots, about the same 49 000 slots in all as before
        (32 749 / 8 191): every view forms the same contexts per step, and a
        coarse view's variety of contexts does not shrink with its block
        length (on NAB, forgetting them cost more than the raw view's).
    season_warmup, season_views, season_resolutions, season_offset, season_min_acf, season_learn, season_weight
        Seasonal contexts (see
        :class:`~detectors.context_novelty.ContextNoveltyDetector`) in the
        views whose block length is in ``season_views`` (``None``: all):
        the period is the autocorrelation peak of the view's first
        ``season_warmup // step`` blocks; afterwards "the symbols one (and
        two) periods ago -> the current symbol" is one more novelty vote of
        the view. ``season_warmup=None`` turns them off.

    Examples
    --------
    A sine wave with noise; at reading 1500 the wave stops and stays flat at
    its mean for 60 readings (every reading is within the usual range):

    >>> import math, random
    >>> from detectors.multiscale_novelty import MultiScaleNoveltyDetector
    >>> rng = random.Random(7)
    >>> det = MultiScaleNoveltyDetector()
    >>> scores = []
    >>> for t in range(2000):
    ...     v = 10 * math.sin(2 * math.pi * t / 48) + rng.gauss(0, 0.5)
    ...     if 1500 <= t < 1560:
    ...         v = rng.gauss(0, 0.5)
    ...     x = {"value": v}
    ...     scores.append(det.score_one(x))
    ...     det.learn_one(x)
    >>> max(scores[1500:1560]) > max(scores[1000:1500])
    True
    >>> det.score_one({"other": 1.0}) == det.score_one({"value": float("nan")})
    True
    """

    def __init__(
        self,
        field: str = "value",
        steps: tuple | list = (1, 6, 12),
        offsets: tuple | list = (0.0, -0.1, -0.15),
        rest_period: int = 30,
        rest_threshold: float = 0.75,
        view_rest: int = 50,
        resolutions: tuple | list = ((4, 8), (8, 5), (16, 3), (32, 2)),
        base_alpha: float = 0.01,
        excursion_scale: float | None = 0.1,
        alarm_penalty: float = 0.01,
        alarm_memory: float = 1000.0,
        range_window: int | None = 6000,
        range_chunks: int = 20,
        range_growth: float | None = 3.0,
        season_warmup: int | None = 2000,
        season_resolutions: tuple | list = ((4, 2), (8, 2)),
        season_offset: float = 0.0,
        season_views: tuple | list | None = (12,),
        season_min_acf: float = 0.5,
        season_learn: int = 3,
        season_weight: float = 0.0,
        magnitude_alpha: float = 0.002,
        flat_min_run: int | None = 48,
        flat_margin: float = 0.1,
        magnitude_weight: float = 0.3,
        magnitude_scale: float = 4.5,
        coarse_magnitude_weight: float = 0.1,
        coarse_magnitude_scale: float = 6.0,
        coarse_magnitude_in_readings: bool = True,
        shape_window: int | None = 32,
        shape_recent: int = 256,
        shape_reservoir: int = 64,
        shape_stride: int = 16,
        shape_scale: float = 0.2,
        shape_offset: float = -0.1,
        shape_periodic_offset: float | None = 0.1,
        shape_record_decay: float = 1.0,
        shape_long_step: int | None = 8,
        shape_long_window: int = 32,
        shape_long_recent: int = 96,
        shape_long_reservoir: int = 32,
        shape_long_stride: int = 4,
        shape_long_offset: float | None = None,
        shape_long_warmup: int = 20,
        shape_tiebreak: float = 0.05,
        alarm_band: tuple | list | None = (0.75, 0.95),
        context_slots: int | tuple | list = (24571, 12289),
        context_generation_share: int = 8,
        season_slots: int = 4093,
    ) -> None:
        store_params(self, locals())  # every argument as an attribute (checked, normalised)
        self._flat = FlatRunRecord(flat_min_run, flat_margin)
        self._shape, self._long = shape_votes(self)
        self._decay = math.exp(-1.0 / alarm_memory) if alarm_memory > 0 else 0.0
        self._report = score_reporter(self.alarm_band, self.shape_tiebreak, alarm_penalty)
        build_views(self)  # _views, _raw_view, _raw_offset, _blocks, _seasonal
        self._sums = [0.0 for _ in self.steps]  # sum and number of the readings of each view's open block
        self._counts = [0 for _ in self.steps]
        self._quiet = 0
        self._score = 0.0
        self._alarms = 0.0
        # the shape votes' offsets, (short, long): they change only when the
        # seasonal view finds its period, so learn_one keeps them (and that period)
        self._offsets, self._offsets_period = shape_offsets(self), 0  # (no view has a period yet)

    # -- River-style API -----------------------------------------------------

    def score_one(self, x: dict[str, float]) -> float:
        v = _reading(x, self.field)
        if v is None:
            return self._score
        if self._quiet > 0:
            return 0.0
        # highest vote of the flat-run record and of the views whose block v
        # completes (no learning)
        best = self._flat.vote(v)
        distinct = 0.0  # highest shape score (no offset), the tie-breaker
        shape, long = self._shape, self._long
        short_offset, long_offset = self._offsets
        if shape is not None:
            # shape.score(v), without the call when its score is held
            distinct = shape.score(v) if shape._due else shape._score
            r = distinct + short_offset
            if r > best:
                best = r
        if long is not None:
            # long.score(v), without the call when v completes no block
            d = long.score(v) if long._count + 1 >= long.step else long._shape._score
            r = d + long_offset
            if r > best:
                best = r
            if d > distinct:
                distinct = d
        raw = self._raw_view
        if raw is not None:
            # the mean of a block of one reading, (0.0 + v) / 1, is v + 0.0 (-0.0 -> 0.0)
            r = raw._score_value(v + 0.0) + self._raw_offset
            if r > best:
                best = r
        sums, counts = self._sums, self._counts
        for k, step, offset, view in self._blocks:
            count = counts[k] + 1
            if count < step:
                continue
            mean = (sums[k] + v) / count
            r = (view._score_value(mean) if isfinite(mean) else view._score) + offset
            if r > best:
                best = r
        return self._report(best, distinct, self._alarms * self._decay)  # band, top votes, penalty

    def learn_one(self, x: dict[str, float]) -> None:
        v = _reading(x, self.field)
        if v is None:
            return
        flat = self._flat
        best = flat_vote = flat.step(v)  # vote, then learn
        distinct = 0.0
        shape, long = self._shape, self._long
        short_offset, long_offset = self._offsets
        if shape is not None:
            shape.learn(v)  # its score stays what score_one gave v
            distinct = shape._score
            r = distinct + short_offset
            if r > best:
                best = r
        if long is not None:
            long.learn(v)
            d = long._shape._score  # long.held, without the call
            r = d + long_offset
            if r > best:
                best = r
            if d > distinct:
                distinct = d
        sums, counts = self._sums, self._counts
        for k, step, offset, view in self._blocks:
            count = counts[k] + 1
            if count < step:
                sums[k] += v
                counts[k] = count
                continue
            mean = (sums[k] + v) / count
            if isfinite(mean):
                view._learn_value(mean)
            # a context_novelty view keeps, as its score, what score_one
            # gave the value just learnt: no second look-up needed
            r = view._score + offset
            if r > best:
                best = r
            sums[k] = 0.0
            counts[k] = 0
        raw = self._raw_view
        if raw is not None:
            raw._learn_value(v + 0.0)  # last (see __init__); v + 0.0 as in score_one
            r = raw._score + self._raw_offset
            if r > best:
                best = r
        seasonal = self._seasonal
        if seasonal is not None and seasonal._period != self._offsets_period:  # found with v
            self._offsets, self._offsets_period = shape_offsets(self), seasonal._period
        self._alarms *= self._decay
        if self._quiet > 0:
            self._quiet -= 1
            self._score = 0.0
        else:
            self._score = self._report(best, distinct, self._alarms)
            if best >= self.rest_threshold:
                self._quiet = self.rest_period
                self._alarms += 1.0
                if flat_vote >= self.rest_threshold:
                    flat.fired()  # one alarm per record-breaking run

    # -- state ---------------------------------------------------------------

    def snapshot(self) -> dict[str, Any]:
        return multiscale_snapshot(self)

    def restore(self, state: dict[str, Any]) -> None:
        multiscale_restore(self, state)
