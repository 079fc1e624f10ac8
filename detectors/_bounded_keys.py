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

The state is a bitmap of ``slots`` bits (the known slots) and one bit per
known slot (current generation or not), zlib-compressed.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import numpy as np

from detectors._packed import pack, pack_bits, unpack, unpack_bits

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
        self.union: set[int] = set()  # slots of the current and previous generations
        self.current: set[int] = set()

    def slots_of(self, keys: Iterable[int]) -> map:
        """The slots of ``keys`` (lazily)."""
        return map(self._mod, keys)

    def known_all(self, keys: Iterable[int]) -> bool:
        """Whether every key of ``keys`` is known."""
        return self.union.issuperset(map(self._mod, keys))

    def current_has_all(self, keys: Iterable[int]) -> bool:
        """Whether every key of ``keys`` was learnt in the current generation."""
        return self.current.issuperset(map(self._mod, keys))

    def count_known(self, keys: Iterable[int]) -> int:
        """How many distinct known slots ``keys`` fall in."""
        return len(self.union.intersection(map(self._mod, keys)))

    def __contains__(self, key: int) -> bool:
        return key % self.slots in self.union

    def add(self, keys: Iterable[int]) -> None:
        """Remember ``keys`` in the current generation (starting a new one when it is full)."""
        new = set(map(self._mod, keys))
        new -= self.current
        if new:
            self.current |= new
            self.union |= new
            if len(self.current) >= self._cap:
                self.union = self.current
                self.current = set()

    # -- state ---------------------------------------------------------------

    def snapshot(self) -> dict[str, Any]:
        """The known slots as a bitmap, and which of them are the current generation's
        (one bit per known slot, in slot order)."""
        known = np.fromiter(sorted(self.union), dtype=np.int64, count=len(self.union))
        in_current = np.fromiter((k in self.current for k in known.tolist()), dtype=np.uint8, count=len(known))
        return {"slots": self.slots, "union": pack_bits(self.union, self.slots),
                "current": pack(np.packbits(in_current))}

    def restore(self, state: dict[str, Any] | Iterable[int]) -> None:
        """A :meth:`snapshot`, or (older snapshots) a list of keys, learnt afresh."""
        self.union, self.current = set(), set()
        if isinstance(state, dict) and "union" in state:
            if int(state.get("slots", self.slots)) == self.slots:
                self.union = unpack_bits(state["union"], self.slots)
                known = sorted(self.union)
                mask = np.unpackbits(unpack(state["current"]))[: len(known)]
                self.current = {k for k, m in zip(known, mask.tolist()) if m}
                return
            state = []  # another slot count: the contexts are learnt again
        self.add(int(k) for k in state)
