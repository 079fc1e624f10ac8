"""Shape (subsequence) novelty: how far the last ``w`` readings are from every earlier window.

A daily or weekly pattern with the wrong shape at normal values (a missing
peak, a stretched cycle, a phase jump) is not a new value, nor a new short
context, but its window of ``w`` readings looks like no earlier window.
:class:`ShapeNovelty` is a bounded nearest-neighbour ("discord") score:

* the *distance* of a window to another is the Euclidean distance of the
  two windows after z-normalisation (each minus its mean, over its standard
  deviation; the deviation is at least ``floor_share`` times the recent
  readings' one, so a flat stretch's noise is not blown up into a shape);
* the windows compared with are every window of the last ``recent``
  readings that does not overlap the current one, plus a *reservoir* of
  ``reservoir`` older windows (a uniform, seeded sample of every window that
  left the recent buffer; kept z-normalised as ``int8``);
* the shape score is computed every ``stride`` readings (vectorised: one
  sliding correlation over the recent buffer and one matrix-vector product
  with the reservoir) and held in between;
* the score compares the distance with the sensor's own *record*, the
  largest distance computed so far (from half the warm-up on; times
  ``record_decay`` per computation, 1 = never forgotten): a window farther
  from everything than any window before scores
  ``tanh((distance / record - 1) / scale)``, any other 0. A noisy sensor's
  record is high, so its noise does not score; a regular sensor's first
  odd cycle does. (A z-score of the distance against its running mean and
  deviation was tried first: its early, unsettled deviations made
  ordinary windows score as high as planted anomalies.)

Strictly causal: the window ending at the reading scored is compared with
windows learnt before it; the reading is learnt after.

Bad input never poisons the state: a reading not strictly within float32's
range (:data:`~detectors.base.MODEL_VALUE_LIMIT`, where the anomaly models
hold larger readings), inf or NaN is kept as the reading before it. Such a
reading is no shape: kept as a number, it would be inf in the float32
buffer (before this guard: NaN distances, a NaN record), or, held at the
limit, a spike whose z-normalised window sets a record (~1) that no later
window beats, and whose variance, through ``floor_share``, flattens every
other window while it is in the buffer. A restored buffer, record or score
that is not finite (snapshots written before the guard) is made so.

State: the last ``recent + w - 1`` readings (``float32``), the reservoir
(``reservoir x w`` bytes), a few scalars: capped by construction.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from detectors._packed import pack, unpack
from detectors._shape_numbers import _LCG_M, _finite, _held_readings, _lcg_jumps, _row_dots, _variance, _windows
from detectors.base import MODEL_VALUE_LIMIT

__all__ = ["ShapeNovelty"]

# the reservoir's int8 steps per z unit: 127 / _Z_TOP. A z-normalised window has
# |z| <= sqrt(w - 1) < 6 for w <= 37, so 6 used every int8 step; 24 (since
# session 11) quantises to 0.19 z and keeps values within +-32, about 2 bits
# a value less once compressed (~1 KB of the default's worst-case snapshot);
# NAB's scores are the same (section 5.00000 of docs/anomaly.md)
_Z_TOP = 24.0
_Q = 127.0 / _Z_TOP
#: _Z_TOP of snapshots without "z_top" (written before session 11)
_Z_TOP_BEFORE = 6.0
# readings dropped from the buffer at a time (up to 240 bytes of a snapshot: 16 would
# save 190 of them, but cost NAB 0.4 points, 72.3 / 63.5 against 72.7 / 64.2)
_SLACK = 64
_PY_SUMS = 64  # prefix sums of at most this many new readings are extended in plain Python


class ShapeNovelty:
    """Bounded nearest-neighbour distance of the latest window (a "discord" score).

    Parameters
    ----------
    window
        Readings per window ``w``.
    recent
        Windows of the recent buffer (every one, in order).
    reservoir
        Older windows kept as a seeded uniform sample.
    stride
        The score is computed every ``stride`` readings and held in between.
    floor_share
        A window's standard deviation is at least this share of the recent
        readings' one.
    scale
        Share by which the record is beaten at which the score is ``tanh(1)``.
    warmup
        Computations before the score may be non-zero (the record is
        taken from half of it on).
    record_decay
        The record is multiplied by this at every computation (before
        comparing); 1 keeps it for ever.
    seed
        Seed of the reservoir's sampling.

    Examples
    --------
    A noisy sine of period 48; from reading 3024 one cycle has its peak cut
    off at the mean (every value within the usual range):

    >>> import math, random
    >>> rng = random.Random(1)
    >>> shape = ShapeNovelty(window=32, recent=256, reservoir=32, stride=4)
    >>> scores = []
    >>> for t in range(3200):
    ...     v = math.sin(2 * math.pi * t / 48) + rng.gauss(0, 0.05)
    ...     if 3024 <= t < 3048:
    ...         v = min(v, 0.0)
    ...     scores.append(shape.score(v))
    ...     shape.learn(v)
    >>> max(scores[3024:3080]) > max(scores[1000:3024])
    True
    """

    def __init__(
        self,
        window: int = 32,
        recent: int = 512,
        reservoir: int = 64,
        stride: int = 4,
        floor_share: float = 0.05,
        scale: float = 0.2,
        warmup: int = 50,
        record_decay: float = 1.0,
        seed: int = 0,
    ) -> None:
        self.record_decay = float(record_decay)
        self._record = 0.0
        if window < 2 or recent < 2 * window or stride < 1 or reservoir < 0:
            raise ValueError("shape novelty: window >= 2, recent >= 2 window, stride >= 1, reservoir >= 0")
        self.window, self.recent, self.stride = int(window), int(recent), int(stride)
        self.reservoir, self.floor_share = int(reservoir), float(floor_share)
        self.scale, self.warmup, self.seed = float(scale), int(warmup), int(seed)
        self._size = self.recent + self.window - 1  # readings kept: the recent windows' span
        # readings, float32; when the buffer is full, the oldest _SLACK readings
        # leave it and the windows starting in them are offered to the reservoir
        self._buf = np.zeros(self._size + _SLACK, dtype=np.float32)
        self._end = 0  # readings in _buf
        self._pending: list[float] = []  # readings learnt since, not yet written to _buf (see _flush)
        self._due = False  # whether the next reading's score is computed (else held)
        # work arrays of _distance: readings (float64), prefix sums of them and of their squares
        span = len(self._buf) + 1
        self._work = (np.empty(span), np.zeros((2, span + 1)))
        self._work_windows = _windows(self._work[0], self.window)  # a view: row i is the window at i
        self._summed = 0  # readings of _buf whose prefix sums are in _work
        self._res = np.zeros((0, self.window), dtype=np.int8)
        self._res_z = np.zeros((0, self.window), dtype=np.float32)
        self._res_sq = np.zeros(0, dtype=np.float32)
        self._offered = 0  # windows offered to the reservoir so far
        self._rng = self.seed % _LCG_M
        self._n = 0
        self._computed = 0
        self._score = 0.0
        self._cache: tuple[int, float] | None = None

    def clone(self) -> "ShapeNovelty":
        """A fresh instance with the same parameters."""
        return type(self)(self.window, self.recent, self.reservoir, self.stride, self.floor_share,
                          self.scale, self.warmup, self.record_decay, self.seed)

    # -- scoring ----------------------------------------------------------------

    def score(self, v: float) -> float:
        """Score of the window ending with reading ``v`` (not learnt)."""
        if not self._due:
            return self._score
        d = self._distance(v)
        self._cache = (self._n, d)
        return self._score_of(d)

    def learn(self, v: float) -> None:
        """Learn reading ``v`` (after :meth:`score`)."""
        cache, self._cache = self._cache, None
        if self._due:
            d = cache[1] if cache is not None and cache[0] == self._n else self._distance(v)
            self._score = self._score_of(d)
            self._computed += 1
            if self._computed >= self.warmup // 2:
                record = self._record * self.record_decay
                self._record = d if d > record else record  # (a NaN never becomes the record)
        self._n += 1
        pending = self._pending
        held = self._end + len(pending)  # readings kept, v not yet
        if held == len(self._buf):
            self._flush()
            self._shift()
            held = self._end
        pending.append(v if -MODEL_VALUE_LIMIT < v < MODEL_VALUE_LIMIT else self._held())
        self._due = not (self._n + 1) % self.stride and held + 1 >= self._size

    def _held(self) -> float:
        """What the buffer keeps of a reading not strictly within float32's range
        (or NaN): the reading before it (0.0 for the first)."""
        if self._pending:
            return self._pending[-1]
        return float(self._buf[self._end - 1]) if self._end else 0.0

    def _flush(self) -> None:
        """Write the pending readings to the buffer (one numpy call for a stride's
        readings instead of one per reading; the same float32 values)."""
        pending = self._pending
        if pending:
            end = self._end + len(pending)
            self._buf[self._end:end] = pending
            self._end = end
            pending.clear()

    def _score_of(self, d: float) -> float:
        if self._computed < self.warmup:
            return 0.0
        z = d / (self._record + 1e-12) - 1.0
        return math.tanh(z / self.scale) if z > 0.0 else 0.0

    def _distance(self, v: float) -> float:
        """Smallest z-normalised distance (over ``sqrt(w)``) of the window ending with ``v``.

        Prefix sums of the buffer and of its squares (the two rows of one
        array) give every window's mean and variance; they are kept between
        computations and only extended by the readings buffered since
        (cumulative sums are sequential, so the floats equal a sum from the
        buffer's start, and a restored or shifted buffer starts them afresh;
        the few readings of one stride are summed in plain Python, with the
        same floats). The dot products with the query window, of the recent
        windows and of the reservoir's, are summed by numpy's own reduction
        (``_row_dots``: ``np.einsum``, the same bits on every CPU). At these
        sizes numpy's per-call overhead costs more than the arithmetic, so
        the number of calls is kept small.
        """
        self._flush()
        w, end = self.window, self._end
        n = end + 1
        x, c = self._work
        k = self._summed
        if k < end:  # prefix sums of the readings buffered since the last computation
            x[k:end] = self._buf[k:end]
            if end - k <= _PY_SUMS:
                s, s2 = float(c[0, k]), float(c[1, k])
                sums, sums2 = [], []
                for r in x[k:end].tolist():
                    s += r
                    s2 += r * r
                    sums.append(s)
                    sums2.append(s2)
                c[0, k + 1:end + 1] = sums
                c[1, k + 1:end + 1] = sums2
            else:
                # accumulating from c[:, k] gives the same floats as a cumsum from the buffer's start
                new = np.empty((2, end - k + 1))
                new[:, 0] = c[:, k]
                new[0, 1:] = x[k:end]
                np.multiply(new[0, 1:], new[0, 1:], out=new[1, 1:])
                np.cumsum(new, axis=1, out=c[:, k:end + 1])
            self._summed = end
        r = float(np.float32(v if -MODEL_VALUE_LIMIT < v < MODEL_VALUE_LIMIT else self._held()))
        x[end] = r
        s, s2 = float(c[0, end]) + r, float(c[1, end]) + r * r
        c[0, n], c[1, n] = s, s2  # c[:, 0] == 0: window sums are differences
        mean_all = s / n
        total_var = max(s2 / n - mean_all * mean_all, 0.0)
        ff = self.floor_share * self.floor_share * total_var + 1e-24
        stats = c[:, w:n + 1] - c[:, : n + 1 - w]
        stats /= w
        mu, var = stats
        var -= mu * mu
        np.maximum(var, 0.0, out=var)
        inv = var + ff
        np.sqrt(inv, out=inv)
        np.divide(1.0, inv, out=inv)
        mu_q, var_q, inv_q = float(mu[-1]), float(var[-1]), float(inv[-1])
        q = x[n - w:n] - mu_q
        q *= inv_q + inv_q  # twice the query: the dot products below need 2 (x_a . q)
        qq = w * var_q * inv_q * inv_q
        # windows that end at least w readings before v (no overlap with the query);
        # sum(q) == 0, so the window means drop out of the dot products:
        # |a - q|^2 = w var_a inv_a^2 - 2 inv_a (x_a . q) + qq
        m = n - 2 * w + 1
        inv_m = inv[:m]
        t = var[:m] * inv_m
        t *= w
        t -= _row_dots(self._work_windows[:m], q)
        t *= inv_m
        best = float(t.min())
        if len(self._res_z):
            best = min(best, float((self._res_sq - _row_dots(self._res_z, q.astype(np.float32))).min()))
        return math.sqrt(max(best + qq, 0.0) / w)

    # -- learning ----------------------------------------------------------------

    def _shift(self) -> None:
        """Drop the oldest readings; the windows starting in them are offered to the reservoir."""
        keep = self._size
        drop = self._end - keep
        if self.reservoir:
            slots = self._draws(drop)
            starts = [(int(i), int(slots[i])) for i in np.flatnonzero(slots < self.reservoir)]
            if starts:
                x = self._buf[: self._end].astype(np.float64)
                ff = self.floor_share * self.floor_share * _variance(x) + 1e-24
                w = self.window
                wins = x[np.array([i for i, _ in starts])[:, None] + np.arange(w)]  # the windows, a copy
                # (wins - mean) / sqrt(var + ff), var as np.var computes it (same floats)
                wins -= wins.sum(axis=1, keepdims=True) / w
                var = np.square(wins).sum(axis=1, keepdims=True) / w
                wins /= np.sqrt(var + ff)
                q = np.clip(np.rint(wins * _Q), -127, 127).astype(np.int8)
                # while the reservoir fills, slots are taken in order, and a window
                # drawn after the last one filled has a slot below it: the size after
                # these windows is the highest slot + 1
                size = max(slot for _, slot in starts) + 1
                if size > len(self._res):
                    self._res = np.concatenate((self._res, np.zeros((size - len(self._res), w), np.int8)))
                for (_, slot), row in zip(starts, q):
                    self._res[slot] = row  # in order: a later window replaces an earlier one
                self._refresh_reservoir()
        self._buf[:keep] = self._buf[drop:self._end]
        self._end = keep
        self._summed = 0

    def _draws(self, count: int) -> np.ndarray:
        """Algorithm R for the next ``count`` windows offered: their reservoir slots
        (``>= reservoir``: not kept). Window ``k`` (from 1) takes slot ``k - 1`` while
        the reservoir fills, then a draw of the seeded LCG modulo ``k``; the LCG's
        steps are taken at once (``x_j = A^j x_0 + C (A^(j-1) + ... + 1)``, in uint64
        arithmetic, which wraps modulo 2^64 as the LCG does)."""
        k = np.arange(self._offered + 1, self._offered + count + 1, dtype=np.uint64)
        if self._offered >= self.reservoir:  # the reservoir is full: every window is drawn
            mul, add = _lcg_jumps(count)
            x = mul * np.uint64(self._rng) + add
            self._rng = int(x[-1])
            self._offered += count
            return (x >> np.uint64(11)) % k
        slots = k - np.uint64(1)
        drawn = k > self.reservoir  # a suffix: k grows
        steps = int(drawn.sum())
        if steps:
            mul, add = _lcg_jumps(steps)
            x = mul * np.uint64(self._rng) + add
            slots[drawn] = (x >> np.uint64(11)) % k[drawn]
            self._rng = int(x[-1])
        self._offered += count
        return slots

    def _refresh_reservoir(self) -> None:
        self._res_z = self._res.astype(np.float32) / np.float32(_Q)
        self._res_sq = np.einsum("ij,ij->i", self._res_z, self._res_z)

    # -- state ----------------------------------------------------------------

    def snapshot(self) -> dict[str, Any]:
        return {
            "hist": pack(np.concatenate((self._buf[: self._end], np.asarray(self._pending, dtype=np.float32)))),
            "reservoir": pack(self._res),
            "z_top": _Z_TOP,
            "offered": self._offered, "rng": self._rng, "n": self._n, "computed": self._computed,
            "record": self._record, "score": self._score,
        }

    def restore(self, state: dict[str, Any]) -> None:
        x = _held_readings(unpack(state["hist"]).astype(np.float32))
        self._res = _requantised(unpack(state["reservoir"]).reshape(-1, self.window)[: self.reservoir],
                                 float(state.get("z_top", _Z_TOP_BEFORE)))
        self._offered, self._rng = int(state["offered"]), int(state["rng"])
        buf = self._buf
        if len(x) > len(buf):  # a longer slack (before session 11): its oldest windows go to the reservoir
            self._buf, self._end = x, len(x)
            self._shift()
            x = x[: self._end]
            self._buf = buf
        buf[: len(x)] = x
        self._end = len(x)
        self._summed = 0
        self._refresh_reservoir()
        self._n = int(state["n"])
        self._computed = int(state["computed"])
        self._record, self._score = _finite(state["record"]), _finite(state["score"])
        self._cache = None
        self._pending = []
        self._due = not (self._n + 1) % self.stride and self._end >= self._size


def _requantised(res: np.ndarray, z_top: float) -> np.ndarray:
    """Reservoir rows stored with 127 int8 steps per ``z_top`` z units, in this version's steps (int8)."""
    if z_top == _Z_TOP:
        return res.astype(np.int8)
    return np.clip(np.rint(res.astype(np.float64) * (z_top / _Z_TOP)), -127, 127).astype(np.int8)
