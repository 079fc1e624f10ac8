"""A set of context keys whose size is capped by construction.

The contexts ``context_novelty`` remembers used to live in a plain set that
grew with the variety of the signal (214 KB of JSON per traffic sensor after
20 000 readings, more for noisier ones). :class:`BoundedKeySet` keeps them
as *slots* instead: a key's slot is ``key % slots`` (``slots`` a prime, so
the digits of a key all move its slot), and at most ``slots`` of them exist
whatever the signal. Two keys may share a slot: a new context then looks
known, which for the share-of-new-contexts score is a small downward bias.

Generations bound the fill and forget what has not been seen for long:
a key is *known* if it was seen in the current or the previous generation;
when the current generation holds ``slots // generation_share`` slots (or
a few more: keys are added a reading's worth at a time), it becomes the
previous one and a new one starts. A regular signal never fills
a generation (it keeps its contexts for ever); a noisy one cycles through
them, and the union is at most ``2 * slots // generation_share`` slots, so
a truly new context is mistaken for a known one with probability at most
``2 / generation_share``.

In memory, every slot holds one byte, the generation number it was last
seen in (``0``: never): a slot is known iff its number is the current one
or the one before, so a new generation is a mere increment (the bytes are
swept only when the number wraps around), and a look-up is an index into
a ``bytearray``: ``slots`` bytes per set
instead of a hash set of int objects (hundreds of KB for a few thousand
slots).

The state is a bitmap of ``slots`` bits (the known slots) and one bit per
known slot (current generation or not), zlib-compressed.
"""

from __future__ import annotations

import functools
from collections.abc import Iterable
from operator import itemgetter
from typing import Any

import numpy as np

from detectors._packed import pack, unpack

__all__ = ["BoundedKeySet"]


class BoundedKeySet:
    """Known context keys, at most ``slots`` of them, in two generations.

    Parameters
    ----------
    slots
        Number of slots (a prime works best).
    generation_share
        A generation ends when it holds ``slots // generation_share`` slots.

    Examples
    --------
    >>> ks = BoundedKeySet(slots=101, generation_share=4)
    >>> ks.add([5, 106])            # 106 % 101 == 5: one slot
    >>> ks.known_all([5]), ks.count_known([5, 6, 7])
    (True, 1)
    >>> for k in range(200, 260):    # fills generations: the oldest keys are forgotten
    ...     ks.add([k])
    >>> ks.known_all([5]), len(ks.union) < 2 * (101 // 4) + 60
    (False, True)
    """

    def __init__(self, slots: int = 16381, generation_share: int = 8) -> None:
        self.slots = int(slots)
        self.generation_share = int(generation_share)
        self._cap = max(1, self.slots // self.generation_share)
        self._mod = self.slots.__rmod__  # key -> key % slots, a C call in map()
        self._writes = 0  # changes of the generations so far (see look_up_contexts)
        self._clear()

    def _clear(self) -> None:
        """Nothing known: every slot's generation ``0``, the current one ``_FIRST``."""
        # per slot: the generation it was last seen in (0: never); until a key
        # is learnt, the zeros shared by every empty set of this size
        self._set_generations(_no_generations(self.slots))
        self._start_generation(_FIRST)

    def _set_generations(self, gen: bytes | bytearray) -> None:
        self._writes += 1
        self._gen = gen
        self._at = gen.__getitem__

    def _writable(self) -> bytearray:
        """The generations, made this set's own (a bytearray) before the first write."""
        if not isinstance(self._gen, bytearray):
            self._set_generations(bytearray(self._gen))
        return self._gen

    def _start_generation(self, now: int) -> None:
        """Make ``now`` the current generation (empty) and ``now - 1`` the previous one."""
        self._now = now
        self._prev = now - 1  # a slot is known iff its generation >= _prev (none is above _now)
        self._unknown = bytes(range(now - 1))  # the generations of slots not known
        self._fill = 0  # slots of the current generation

    @property
    def union(self) -> set[int]:
        """The known slots (current and previous generations), a fresh set."""
        return set(np.flatnonzero(np.frombuffer(self._gen, dtype=np.uint8) >= self._prev).tolist())

    @property
    def current(self) -> set[int]:
        """The slots learnt in the current generation, a fresh set."""
        return set(np.flatnonzero(np.frombuffer(self._gen, dtype=np.uint8) == self._now).tolist())

    def slots_of(self, keys: Iterable[int]) -> map:
        """The slots of ``keys`` (lazily)."""
        return map(self._mod, keys)

    def slot_set(self, keys: Iterable[int]) -> set[int]:
        """The distinct slots of ``keys`` (for :meth:`count_known_slots` and :meth:`add_slots`)."""
        return set(map(self._mod, keys))

    # known_all / current_has_all take a handful of keys a reading: a plain loop
    # beats a min() over map() chains there (0.33 vs 1.28 µs for 3 keys)
    def known_all(self, keys: Iterable[int]) -> bool:
        """Whether every key of ``keys`` is known."""
        gen, slots, prev = self._gen, self.slots, self._prev
        for key in keys:
            if gen[key % slots] < prev:
                return False
        return True

    def current_has_all(self, keys: Iterable[int]) -> bool:
        """Whether every key of ``keys`` was learnt in the current generation."""
        gen, slots, now = self._gen, self.slots, self._now
        for key in keys:
            if gen[key % slots] != now:
                return False
        return True

    def look_up_contexts(self, keys: list[int], longest: Iterable[int]) -> tuple[tuple | None, int]:
        """``(looked, known)`` of a reading's context ``keys``, ``longest`` its
        longest ones (a context is learnt with all its shorter ones): if every
        longest key was learnt in the current generation, ``looked`` is ``None``
        (nothing to learn) and ``known`` is ``len(keys)``; if every one is known,
        ``known`` is ``len(keys)``; else the number of distinct known slots.
        ``looked``, for :meth:`add_looked_up`: the distinct slots of ``keys``, the
        generation each was last seen in (bytes, in the set's order) and a stamp
        of the set's state (the slots are indexed once, for the count and for
        learning)."""
        gen, n, now, prev = self._gen, self.slots, self._now, self._prev
        current = known = True
        for key in longest:  # current_has_all and known_all in one loop
            g = gen[key % n]
            if g != now:
                current = False
                if g < prev:
                    known = False
                    break
        if current:
            return None, len(keys)
        slots = {key % n for key in keys}  # a comprehension: faster than map(__rmod__)
        if len(slots) > 1:
            generations = bytes(itemgetter(*slots)(gen))  # one C call (a tuple of 2+ items)
        else:
            generations = bytes([gen[s] for s in slots])
        looked = slots, generations, self._writes
        if known:
            return looked, len(keys)
        return looked, len(generations.translate(None, self._unknown))

    def count_known(self, keys: Iterable[int]) -> int:
        """How many distinct known slots ``keys`` fall in."""
        return self.count_known_slots(self.slot_set(keys))

    def count_known_slots(self, slots: set[int]) -> int:
        """How many of the distinct ``slots`` (:meth:`slot_set`) are known."""
        # their generations as bytes, those below _prev deleted: one C call each
        return len(bytes(map(self._at, slots)).translate(None, self._unknown))

    def __contains__(self, key: int) -> bool:
        return self._gen[key % self.slots] >= self._prev

    def add(self, keys: Iterable[int]) -> None:
        """Remember ``keys`` in the current generation (starting a new one when it is full)."""
        self.add_slots(self.slot_set(keys))

    def add_slots(self, slots: set[int]) -> None:
        """:meth:`add` of keys whose distinct slots (:meth:`slot_set`) are ``slots``."""
        gen, now = self._gen, self._now
        new = [s for s in slots if gen[s] != now]
        if new:
            self._learn(new, len(new))

    def add_looked_up(self, looked: tuple[set[int], bytes, int]) -> None:
        """:meth:`add_slots` of the slots looked up by :meth:`look_up_contexts`; if the set is
        unchanged since, the generations looked up tell which slots are new."""
        slots, generations, writes = looked
        if writes != self._writes:  # learnt or restored since: the generations are stale
            self.add_slots(slots)
            return
        new = len(generations) - generations.count(self._now)
        if new:
            self._learn(slots, new)  # rewriting a current slot's number changes nothing

    def _learn(self, slots: Iterable[int], new: int) -> None:
        """Make ``slots``, ``new`` of which were not the current generation's, the current generation's."""
        gen, now = self._writable(), self._now
        for s in slots:
            gen[s] = now
        self._writes += 1
        self._fill += new
        if self._fill >= self._cap:
            self._next_generation()

    def _next_generation(self) -> None:
        """The current generation becomes the previous one; the previous one is forgotten."""
        if self._now < 255:
            self._start_generation(self._now + 1)
            return
        # wrap-around: the current generation's slots become _FIRST - 1, all others 0
        self._gen[:] = self._gen.translate(_WRAP)
        self._start_generation(_FIRST)

    # -- state ---------------------------------------------------------------

    def snapshot(self) -> dict[str, Any]:
        """The known slots as a bitmap, and which of them are the current generation's
        (one bit per known slot, in slot order)."""
        gen = np.frombuffer(self._gen, dtype=np.uint8)
        known = gen >= self._prev
        return {"slots": self.slots, "union": pack(np.packbits(known)),
                "current": pack(np.packbits(gen[known] == self._now))}

    def restore(self, state: dict[str, Any] | Iterable[int]) -> None:
        """A :meth:`snapshot`, or (older snapshots) a list of keys, learnt afresh."""
        self._clear()
        if isinstance(state, dict) and "union" in state:
            if int(state.get("slots", self.slots)) == self.slots:
                known = np.flatnonzero(np.unpackbits(unpack(state["union"]))[: self.slots])
                in_current = np.zeros(len(known), dtype=bool)
                mask = np.unpackbits(unpack(state["current"]))[: len(known)].astype(bool)
                in_current[: len(mask)] = mask
                if len(known):
                    gen = np.frombuffer(self._writable(), dtype=np.uint8)  # a writable view of the bytes
                    gen[known] = np.where(in_current, self._now, self._prev).astype(np.uint8)
                self._fill = int(in_current.sum())
                return
            state = []  # another slot count: the contexts are learnt again
        self.add(int(k) for k in state)


@functools.lru_cache(maxsize=16)
def _no_generations(slots: int) -> bytes:
    """``slots`` zero bytes (read-only, shared by the empty sets of ``slots`` slots)."""
    return bytes(slots)


#: the first current generation (the previous one, _FIRST - 1, is never 0: 0 is "never seen")
_FIRST = 2
#: bytes.translate table of a wrap-around: generation 255 (the current one) -> _FIRST - 1, all others 0
_WRAP = bytes(_FIRST - 1 if g == 255 else 0 for g in range(256))
