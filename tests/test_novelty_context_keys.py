"""The context-key bookkeeping of ``context_novelty`` (detectors/_contexts.py)
against a plain re-statement of the definition, and snapshot / restore of the
default ``multiscale_novelty`` once its seasonal contexts are in use.

Snapshots stored by running workers keep the per-resolution ``hist``
integers of the definition and the seen keys' slots (``key * R + r`` modulo
the number of slots; with more slots than keys, no two keys share one):
these tests pin them.
"""

from __future__ import annotations

import json
import math
import random

import pytest

from detectors._bounded_keys import BoundedKeySet
from detectors._contexts import ContextKeys
from detectors._flat_run import FlatRunRecord
from detectors._multiscale_scalars import readable
from detectors.context_novelty import ContextNoveltyDetector
from detectors.multiscale_novelty import MultiScaleNoveltyDetector


class ReferenceContexts:
    """The definition, one resolution and one order at a time: the key of
    order ``k`` has the digits ``q + 2``, then ``hist[-1] + 2`` ...
    ``hist[-k] + 2`` in base ``levels + 3``."""

    def __init__(self, resolutions):
        self.resolutions = resolutions
        self.hist = [[] for _ in resolutions]
        self.seen = [set() for _ in resolutions]

    def keys(self, v, lo, hi):
        out = []
        for (levels, order), hist in zip(self.resolutions, self.hist):
            q = 0
            if hi > lo:
                q = math.floor((v - lo) * levels / (hi - lo))
                q = -1 if q < 0 else min(q, levels)
            h, keys = q + 2, []
            for j in range(1, min(order, len(hist)) + 1):
                h = h * (levels + 3) + hist[-j] + 2
                keys.append(h)
            out.append((q, keys))
        return out

    def novelty(self, keys):
        """Share of new contexts; a context is known when its slot is (contexts of
        one reading that share a slot count once), and all are when every
        resolution's longest one is (they are learnt together)."""
        n = sum(order for _, order in self.resolutions)
        r_n = len(self.resolutions)
        seen = slots_of(self)
        self.fresh = not all((ks[-1] * r_n + r) % BIG in seen for r, (_, ks) in enumerate(keys) if ks)
        if not self.fresh:
            return 0.0 if all(ks for _, ks in keys) else (n - sum(len(ks) for _, ks in keys)) / n
        slots = {(k * r_n + r) % BIG for r, (_, ks) in enumerate(keys) for k in ks}
        return (n - len(slots & seen)) / n

    def learn(self, keys):
        for (q, ks), (_, order), hist, seen in zip(keys, self.resolutions, self.hist, self.seen):
            if self.fresh:  # nothing is learnt when every longest context was known
                seen.update(ks)
            hist.append(q)
            del hist[:-order]


#: far more slots than keys (and no generation ends): the definition holds exactly
BIG = 1_000_003


def slots_of(ref) -> set[int]:
    """The reference's keys as the tagged slots a BoundedKeySet of BIG slots holds."""
    n = len(ref.resolutions)
    return {(key * n + r) % BIG for r, keys in enumerate(ref.seen) for key in keys}


def walk(n, seed):
    """A wandering signal with plateaus, outliers and new extremes."""
    rng = random.Random(seed)
    v, out = 0.0, []
    for t in range(n):
        if t % 97 < 5:
            out.append(out[-1] if out else 0.0)  # plateau (and a single-value range at first)
            continue
        v += rng.gauss(0, 1)
        out.append(v + (rng.choice((-30, 30)) if rng.random() < 0.01 else 0.0))
    return out


@pytest.mark.parametrize(
    "resolutions, range_window",
    [
        (((4, 8), (8, 5), (16, 3), (32, 2)), None),
        (((4, 8), (8, 5), (16, 3), (32, 2)), 200),
        (((5, 3), (10, 1)), 60),
        (((7, 4),), None),
    ],
)
def test_keys_novelty_and_snapshot_match_the_definition(resolutions, range_window):
    det = ContextNoveltyDetector(resolutions=resolutions, range_window=range_window, range_chunks=5, rest_period=0,
                                 context_slots=BIG)
    ref = ReferenceContexts(resolutions)
    for t, v in enumerate(walk(1500, seed=len(resolutions))):
        keys = ref.keys(v, det._min, det._max)
        x = {"value": v}
        det.score_one(x)
        assert det._cache[2] == ref.novelty(keys)  # the share of new contexts, exactly
        det.learn_one(x)
        ref.learn(keys)
        if t in (0, 1, 3, 7, 40, 1499):
            state = det.snapshot()
            assert state["hist"] == ref.hist
            restored = BoundedKeySet(BIG, 8)
            restored.restore(json.loads(json.dumps(state["seen"])))
            assert restored.union == slots_of(ref)


def test_streams_of_one_layout_share_their_symbol_parts_and_keep_their_own_keys():
    """Every stream of a layout shares its symbols' key parts (one set for 100 k sensors, a young
    sensor finds most made); two streams read in turn, young and through clipped symbols (outside
    the range: not shared), still give the definition's novelty each."""
    resolutions = ((4, 8), (8, 5), (16, 3), (32, 2))
    dets = [ContextNoveltyDetector(resolutions=resolutions, rest_period=0, context_slots=BIG) for _ in range(2)]
    refs = [ReferenceContexts(resolutions) for _ in dets]
    signals = [walk(400, seed=21), [10.0 * math.sin(t / 7.0) for t in range(400)]]
    for t in range(400):
        for det, ref, values in zip(dets, refs, signals):
            keys = ref.keys(values[t], det._min, det._max)
            det.score_one({"value": values[t]})
            assert det._cache[2] == ref.novelty(keys)
            det.learn_one({"value": values[t]})
            ref.learn(keys)
        if t in (0, 3, 399):  # same history length: same layout, the same parts
            assert dets[0]._contexts._parts is dets[1]._contexts._parts
    assert dets[0].snapshot()["hist"] == refs[0].hist and dets[1].snapshot()["hist"] == refs[1].hist


@pytest.mark.parametrize("learnt", [0, 1, 3, 8, 300])
def test_context_keys_restore_round_trip(learnt):
    resolutions = ((4, 8), (8, 5), (16, 3), (32, 2))
    det = ContextNoveltyDetector(resolutions=resolutions, rest_period=0, context_slots=BIG)
    vals = walk(learnt + 200, seed=learnt)
    for v in vals[:learnt]:
        det.learn_one({"value": v})
    state = json.loads(json.dumps(det.snapshot()))
    keys = ContextKeys(resolutions, BIG, 8)
    keys.restore(state["hist"], state["seen"])
    assert keys.history() == state["hist"] and keys.seen_state() == state["seen"]
    other = ContextNoveltyDetector(resolutions=resolutions, rest_period=0, context_slots=BIG)
    other.restore(state)
    for v in vals[learnt:]:
        x = {"value": v}
        assert det.score_one(x) == other.score_one(x)
        det.learn_one(x)
        other.learn_one(x)
    assert det.snapshot() == other.snapshot()


def test_multiscale_default_restore_with_seasonal_contexts():
    rng = random.Random(11)
    vals = [50 + 20 * math.sin(2 * math.pi * t / 288) + rng.gauss(0, 2) for t in range(5000)]
    vals[4200:4300] = [50 + rng.gauss(0, 2) for _ in range(100)]  # a missing daily swing
    det = MultiScaleNoveltyDetector()
    for v in vals[:3600]:
        x = {"value": v}
        det.score_one(x)
        det.learn_one(x)
    state = json.loads(json.dumps(det.snapshot()))
    assert readable(state)["views"][2]["period"] > 0  # the 12-reading view found the period
    other = MultiScaleNoveltyDetector()
    other.restore(state)
    assert other.snapshot() == state
    a, b = [], []
    for v in vals[3600:]:
        x = {"value": v}
        a.append(det.score_one(x))
        b.append(other.score_one(x))
        det.learn_one(x)
        other.learn_one(x)
    assert a == b and max(a) > 0.5
    assert det.snapshot() == other.snapshot()


def test_multiscale_ignores_bad_readings_like_finite_value():
    det = MultiScaleNoveltyDetector()
    for v in walk(400, seed=2):
        det.learn_one({"value": v})
    before = json.dumps(det.snapshot(), sort_keys=True)
    score = det.score_one({"value": 1.5})
    for x in ({"value": True}, {"value": "nan"}, {"value": float("inf")}, {"value": None}, {}, [], None):
        assert det.score_one(x) == det._score
        det.learn_one(x)
    assert json.dumps(det.snapshot(), sort_keys=True) == before
    assert det.score_one({"value": "1.5"}) == score  # parsed like finite_value does


def test_flat_run_step_is_vote_then_learn():
    rng = random.Random(5)
    vals = [float(rng.choice((1, 2))) if rng.random() < 0.3 else 3.0 for _ in range(3000)]
    one, two = FlatRunRecord(min_run=4, margin=0.1), FlatRunRecord(min_run=4, margin=0.1)
    for t, v in enumerate(vals):
        vote = one.vote(v)
        one.learn(v)
        assert two.step(v) == vote
        if vote and t % 3:
            one.fired()
            two.fired()
        assert one.snapshot() == two.snapshot()


def plain_loop(det):
    """The detector with its first (raw) view back in the block loops."""
    det._raw_view = None
    det._blocks = tuple(zip(range(len(det.steps)), det.steps, det.offsets, det._views))
    return det


@pytest.mark.parametrize("steps, offsets", [((1, 6, 12), (0.0, -0.1, -0.15)), ((1, 4), (0.05, 0.0)), ((3, 1), (0.0, 0.0))])
def test_multiscale_raw_view_outside_the_loops_scores_as_in_them(steps, offsets):
    vals = [-0.0] + walk(3000, seed=len(steps)) + [-0.0, 0.0]  # -0.0: its block mean is 0.0
    fast = MultiScaleNoveltyDetector(steps=steps, offsets=offsets, season_warmup=500)
    plain = plain_loop(MultiScaleNoveltyDetector(steps=steps, offsets=offsets, season_warmup=500))
    # the raw view is the first view of block length 1, wherever it stands
    assert fast._raw_view is (fast._views[steps.index(1)] if 1 in steps else None)
    for v in vals:
        x = {"value": v}
        assert repr(fast.score_one(x)) == repr(plain.score_one(x))
        fast.learn_one(x)
        plain.learn_one(x)
    assert json.dumps(fast.snapshot()) == json.dumps(plain.snapshot())


@pytest.mark.parametrize("levels", [(4, 8, 16, 32), (32, 4, 16, 8), (3, 6, 12), (5,), (4, 12, 16), (3, 8)])
def test_quantiser_key_gives_every_floor_of_the_definition(levels):
    """The quantiser's key (the finest symbol alone where the levels are nested) stands
    for exactly the floors ``floor(offset * L / width)`` of every level, or raises as they do."""
    from detectors._contexts import _quantiser

    key, symbols = _quantiser(levels)
    rng = random.Random(4)
    widths = [1.0, 3.0, 0.1, 1e-300, 7e38, 5e-324, 2.0 ** -1000]
    cases = [(w * rng.uniform(-0.2, 1.2), w) for w in widths for _ in range(3000)]
    cases += [(w * k / max(levels), w) for w in widths for k in range(-2, max(levels) + 3)]  # bin edges
    cases += [(math.nextafter(o, -math.inf), w) for o, w in cases[-200:]]
    cases += [(-5e-324, 7e38), (5e-324, 7e38), (6e38, 1e-300), (0.0, 1.0), (1e-310, 1e-300)]
    for o, w in cases:
        try:
            want = tuple(math.floor(o * L / w) for L in levels)
        except (OverflowError, ValueError) as exc:
            with pytest.raises(type(exc)):
                key(o, w)
            continue
        assert symbols(key(o, w)) == want, (o, w)
    nested = levels not in ((4, 12, 16), (3, 8))  # every finest / L a power of two
    assert (type(key(0.5, 1.0)) is int) == nested


def test_bounded_keys_count_known_slots_through_generations_and_wrap_around():
    """The count of known slots is that of the definition (generation >= the previous one)
    in every generation, across the wrap-around of the generation numbers and a restore."""
    rng = random.Random(5)
    ks = BoundedKeySet(slots=53, generation_share=8)  # a generation ends every 6 slots: hundreds of them
    for step in range(3000):
        slots = ks.slot_set(rng.randrange(10**6) for _ in range(rng.randrange(1, 12)))
        expected = sum(1 for s in slots if ks._gen[s] >= ks._prev)
        assert ks.count_known_slots(slots) == expected, step
        ks.add_slots(slots)
        if step == 1500:
            twin = BoundedKeySet(slots=53, generation_share=8)
            twin.restore(json.loads(json.dumps(ks.snapshot())))
            probe = set(range(53))
            assert twin.count_known_slots(probe) == ks.count_known_slots(probe) == len(ks.union)
    assert ks._now < 255 and step > 255 * 6 // 5  # the numbers wrapped around at least once
