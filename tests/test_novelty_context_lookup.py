"""One pass of a context look-up over the bounded key set (detectors/_bounded_keys.py) and the
shared key layouts of young streams (detectors/_contexts.py), against the separate tests and
the layout computed afresh (issue #10, session 12)."""

from __future__ import annotations

import random

from detectors._bounded_keys import BoundedKeySet
from detectors._contexts import ContextKeys, _gather

RESOLUTIONS = ((4, 8), (8, 5), (16, 3), (32, 2))


def _same_state(a: BoundedKeySet, b: BoundedKeySet) -> bool:
    return bytes(a._gen) == bytes(b._gen) and (a._now, a._prev, a._fill) == (b._now, b._prev, b._fill)


def test_look_up_contexts_counts_and_learns_as_the_separate_tests():
    """``look_up_contexts`` gives ``current_has_all`` / ``known_all`` / ``count_known_slots``'s
    answers, and ``add_looked_up`` learns what ``add_slots`` does, through many generations and
    the wrap-around of their numbers (small sets: slots shared by keys of one reading too)."""
    rng = random.Random(12)
    wrapped = False
    ks, twin = BoundedKeySet(slots=61, generation_share=8), BoundedKeySet(slots=61, generation_share=8)
    for step in range(4000):
        keys = [rng.randrange(10**6) for _ in range(rng.randrange(0, 14))]
        if rng.random() < 0.3 and len(ks.current) > 3:  # keys all current / all known sometimes
            keys = [rng.choice(sorted(ks.current if rng.random() < 0.5 else ks.union)) + 61 * rng.randrange(9)
                    for _ in range(rng.randrange(1, 6))]
        longest = keys[-3:] if rng.random() < 0.5 else keys[::4]
        looked, known = ks.look_up_contexts(keys, longest)
        if twin.current_has_all(longest):
            assert looked is None and known == len(keys), step
            continue
        slots = twin.slot_set(keys)
        assert looked[0] == slots, step
        assert known == (len(keys) if twin.known_all(longest) else twin.count_known_slots(slots)), step
        now = ks._now
        ks.add_looked_up(looked)
        twin.add_slots(slots)
        assert _same_state(ks, twin), step
        wrapped |= ks._now < now
    assert wrapped  # the generation numbers wrapped around at least once


def test_add_looked_up_after_the_set_changed_learns_as_add_slots():
    """Slots looked up before another learn (or a restore) are learnt by the set's state of then,
    not by the generations looked up (a slot shared by both learns counts once in the fill)."""
    ks, twin = BoundedKeySet(slots=101, generation_share=4), BoundedKeySet(slots=101, generation_share=4)
    first, _ = ks.look_up_contexts([1, 2, 3], [3])
    second, _ = ks.look_up_contexts([3, 4, 5, 106], [5])  # 106 % 101 == 5
    ks.add_looked_up(first)
    ks.add_looked_up(second)
    twin.add_slots({1, 2, 3})
    twin.add_slots({3, 4, 5})
    assert _same_state(ks, twin) and ks._fill == 5
    stale, _ = ks.look_up_contexts([7, 8], [8])
    state = ks.snapshot()
    ks.restore(state)
    twin.restore(state)
    ks.add_looked_up(stale)
    twin.add_slots({7, 8})
    assert _same_state(ks, twin)


def test_young_streams_share_each_key_layout_as_computed_afresh():
    """Every stream goes through the same growing layouts: each is made once and shared (the
    gathers of the next tails and of the longest keys included), and equals the one computed
    from the history lengths."""
    streams = [ContextKeys(RESOLUTIONS, slots=4093) for _ in range(2)]
    rng = random.Random(3)
    for t in range(12):
        for ck in streams:
            contexts, _ = ck.look_up(rng.random(), 1.0)
            ck.learn(contexts)
        a, b = streams
        assert a._lengths == b._lengths == tuple(min(order, t + 1) for _, order in RESOLUTIONS)
        assert a._shift is b._shift and a._longest is b._longest and a._parts is b._parts
        lengths = a._lengths
        assert a._growing == any(m < order for (_, order), m in zip(RESOLUTIONS, lengths))
        keys = list(range(100, 100 + sum(lengths) + len(RESOLUTIONS)))  # stand-ins: keys, then symbols
        expected, start = [], 0
        for r, ((_, order), m) in enumerate(zip(RESOLUTIONS, lengths)):
            expected += ([keys[sum(lengths) + r]] + keys[start:start + m])[:order]
            start += m
        assert list(a._shift(keys)) == expected == list(_gather(expected and [k - 100 for k in expected])(keys))
        assert list(a._longest(keys)) == [keys[sum(lengths[: r + 1]) - 1] for r in range(len(RESOLUTIONS))]
