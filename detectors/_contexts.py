"""Context keys of :class:`~detectors.context_novelty.ContextNoveltyDetector`.

A *context* of order ``k`` at resolution ``(levels, K)`` is "the ``k``
previous symbols -> the current symbol", symbols ``-1..levels``. Its key is
the number whose digits, in base ``levels + 3``, are the symbols shifted to
``1..levels + 2``: current symbol first, then the previous one, and so on
(the integers stored in snapshots). The key splits into the current
symbol's part, ``(q + 2) * base**k``, and a *tail* ``tail_k`` that only
depends on the history; after a reading is learnt, ``tail_{k+1}`` is that
reading's key of order ``k``, so the tails of the next reading cost nothing.

Internally, the keys of all the resolutions live in one flat list and one
set, *tagged* with their resolution's index ``r`` (``key * R + r``, ``R``
resolutions); the symbols' parts of the keys are kept per key of the
symbols (with nested levels, the finest symbol alone). A reading costs one
``map`` over its keys and, usually, one set look-up per resolution (its
longest context: a context is always learnt together with its shorter
ones), instead of Python loops over resolutions and orders.

The keys seen are kept in a :class:`~detectors._bounded_keys.BoundedKeySet`
(slots of the keys, two generations): the memory is capped whatever the
signal, and contexts not met again for a generation are forgotten.
"""

from __future__ import annotations

from collections.abc import Callable
from math import floor
from operator import add, itemgetter
from typing import Any

from detectors._bounded_keys import BoundedKeySet

__all__ = ["ContextKeys"]


class ContextKeys:
    """The contexts of every resolution of one stream, and the set of those seen.

    :meth:`look_up` gives a reading's keys, :meth:`learn` remembers them.
    Orders longer than the history so far have no key (they are new).
    """

    def __init__(self, resolutions: tuple[tuple[int, int], ...], slots: int = 16381,
                 generation_share: int = 16) -> None:
        self.resolutions = resolutions
        self._levels = tuple(levels for levels, _ in resolutions)
        self._symbols, self._symbols_of = _quantiser(self._levels)  # (offset, width) -> key, key -> symbols
        self._flat = tuple(0 for _ in resolutions)  # symbols when the range is a single value
        self.seen = BoundedKeySet(slots, generation_share)  # tagged keys' slots
        self.restore([[] for _ in resolutions], [[] for _ in resolutions])

    def look_up(self, offset: float, width: float) -> tuple[tuple[list[int], list[int], tuple | None], int]:
        """The contexts of the reading ``offset`` above the range's minimum
        (range width ``width``, ``0``: a single value), and how many of them
        were seen. The contexts, for :meth:`learn`: the keys, the reading's
        own tagged symbols (its tails of order 1) and the keys' slots to
        learn with their generations (:meth:`BoundedKeySet.look_up_contexts`;
        ``None``: all are the current generation's already)."""
        if width > 0:
            try:
                symbols = self._symbols(offset, width)  # a key of the symbols
            except (OverflowError, ValueError):  # a range beyond float's (width inf): one symbol
                symbols = self._flat
        else:
            symbols = self._flat
        parts = self._parts.get(symbols)
        if parts is None:
            parts = self._new_parts(symbols)
        lead, heads = parts
        keys = list(map(add, lead, self._tails))
        # a context is learnt with all its shorter ones: if every resolution's
        # longest context was seen, all were (the usual case once steady; no
        # set built). Known from the previous generation only: known, and learnt
        # again into the current one (else a context met every day would still
        # be forgotten when its generation ends, and look new once more). The
        # keys' slots and their generations are looked up once, here, for the
        # count and for learn
        looked, known = self.seen.look_up_contexts(keys, self._longest(keys))
        return (keys, heads, looked), known

    def learn(self, contexts: tuple[list[int], list[int], tuple | None]) -> None:
        """Remember the contexts of a reading (from :meth:`look_up`)."""
        keys, heads, looked = contexts
        if looked is not None:
            self.seen.add_looked_up(looked)
        self._tails = self._shift(keys + heads)
        if self._growing:
            self._set_layout(self._next_lengths)

    # -- layout --------------------------------------------------------------

    def _set_layout(self, lengths: tuple[int, ...]) -> None:
        """Keys of orders ``1..lengths[r]`` at resolution ``r`` (the history so far)."""
        self._lengths = lengths
        (self._growing, self._parts, self._shift, self._longest,
         self._next_lengths) = _layout(self.resolutions, self._levels, lengths)

    def _new_parts(self, key: int | tuple[int, ...]) -> tuple[list[int], list[int]]:
        """The symbols' (``key``'s) part of every key (tagged) and the tagged symbols;
        kept for the next readings (of every stream with this layout) if no symbol is
        outside the range. Neither list is ever changed."""
        n = len(self.resolutions)
        lead, heads, clipped = [], [], False
        for r, (levels, q, m) in enumerate(zip(self._levels, self._symbols_of(key), self._lengths)):
            if not -1 < q <= levels:
                q, clipped = (-1 if q < 0 else levels), True
            base, digit = levels + 3, q + 2
            lead += [digit * base**k * n for k in range(1, m + 1)]
            heads.append(digit * n + r)
        parts = lead, heads
        if not clipped:
            self._parts[key] = parts
        return parts

    # -- state ---------------------------------------------------------------

    def history(self) -> list[list[int]]:
        """Per resolution, the last symbols learnt (up to its order, oldest first)."""
        n, out, start = len(self.resolutions), [], 0
        for (levels, _), m in zip(self.resolutions, self._lengths):
            tail = self._tails[start + m - 1] // n if m else 0
            symbols = []
            for _ in range(m):
                tail, digit = divmod(tail, levels + 3)
                symbols.append(digit - 2)
            out.append(symbols)
            start += m
        return out

    def seen_state(self) -> dict[str, Any]:
        """The keys seen (:meth:`BoundedKeySet.snapshot`)."""
        return self.seen.snapshot()

    def restore(self, history: list[list[int]], seen: dict[str, Any] | list[list[int]]) -> None:
        """State from :meth:`history` and :meth:`seen_state`; ``seen`` may also be the
        per-resolution lists of untagged keys of snapshots written before the keys
        were bounded (they are learnt afresh)."""
        n = len(self.resolutions)
        if isinstance(seen, dict):
            self.seen.restore(seen)
        else:
            self.seen.restore([key * n + r for r, keys in enumerate(seen) for key in keys])
        tails: list[int] = []
        for r, ((levels, order), hist) in enumerate(zip(self.resolutions, history)):
            tail = 0
            for q in reversed(hist[-order:] if order else []):
                tail = tail * (levels + 3) + int(q) + 2
                tails.append(tail * n + r)
        self._tails = tuple(tails)
        self._set_layout(tuple(min(order, len(hist)) for (_, order), hist in zip(self.resolutions, history)))


#: (levels, lengths) -> the parts of the symbols' keys met so far with that layout (ContextKeys._new_parts).
#: They depend on the layout alone, so every stream of one layout shares them: a young stream
#: (its layout grows with each of its first readings) finds most of them made, and each of
#: 100 k sensors holds no copy. At most the in-range symbols of each layout met: bounded.
_PARTS: dict[tuple[tuple[int, ...], tuple[int, ...]], dict[int | tuple[int, ...], tuple[list[int], list[int]]]] = {}


#: (resolutions, lengths) -> what :meth:`ContextKeys._set_layout` sets for that layout: a young
#: stream's layout grows with each of its first readings, and every stream goes through the same
#: few layouts (at most ``sum(orders) + 1`` a resolution tuple), so they are made once.
_LAYOUTS: dict[tuple[tuple[tuple[int, int], ...], tuple[int, ...]], tuple] = {}


def _layout(resolutions: tuple[tuple[int, int], ...], levels: tuple[int, ...], lengths: tuple[int, ...]) -> tuple:
    """``(growing, parts, shift, longest, next lengths)`` of the layout ``lengths`` (see :data:`_LAYOUTS`):
    whether it grows at the next reading learnt, the shared parts (:func:`_layout_parts`), the
    gathers of the next tails (from the keys and the tagged symbols) and of each resolution's
    longest key, and the lengths after the next reading learnt."""
    layout = _LAYOUTS.get((resolutions, lengths))
    if layout is not None:
        return layout
    growing = any(m < order for (_, order), m in zip(resolutions, lengths))
    # learn: tails of resolution r <- its symbol, then its keys of orders 1..K-1
    n_keys, start, indexes = sum(lengths), 0, []
    for r, ((_, order), m) in enumerate(zip(resolutions, lengths)):
        indexes += ([n_keys + r] + list(range(start, start + m)))[:order]
        start += m
    layout = _LAYOUTS[resolutions, lengths] = (
        growing, _layout_parts(levels, lengths), _gather(indexes),
        _gather([sum(lengths[: r + 1]) - 1 for r, m in enumerate(lengths) if m]),
        tuple(min(order, m + 1) for (_, order), m in zip(resolutions, lengths)))
    return layout


def _layout_parts(levels: tuple[int, ...], lengths: tuple[int, ...]
                  ) -> dict[int | tuple[int, ...], tuple[list[int], list[int]]]:
    """The shared parts of the layout ``(levels, lengths)`` (see :data:`_PARTS`)."""
    parts = _PARTS.get((levels, lengths))
    if parts is None:
        parts = _PARTS[levels, lengths] = {}
    return parts


def _quantiser(levels: tuple[int, ...]) -> tuple[Callable[[float, float], int | tuple[int, ...]],
                                                   Callable[[int | tuple[int, ...]], tuple[int, ...]]]:
    """``(key, symbols)``: ``key(offset, width)`` stands for the symbols
    ``(floor(offset * L / width) for each L of levels)``, ``symbols(key)`` gives them.

    With nested levels (``top / L`` a power of two for each ``L``, ``top`` the
    finest; the default's 4, 8, 16, 32), a reading within the range is keyed by
    its finest symbol ``q = floor(offset * top / width)``, ``0 <= q <= top``,
    alone: its symbol at ``L`` is ``q >> log2(top / L)`` (exactly:
    ``offset * L / width`` is ``offset * top / width`` divided by a power of
    two, which floating point does without rounding in the normal range, and
    below it both floors are 0), one floor and an int key instead of four
    floors and a tuple. Otherwise (out of the range, other levels) the key is
    the tuple of symbols, written out for four resolutions (no comprehension).

    >>> key, symbols = _quantiser((4, 8, 16, 32))
    >>> key(0.7, 1.0), symbols(key(0.7, 1.0)), key(-0.1, 1.0)
    (22, (2, 5, 11, 22), (-1, -1, -2, -4))
    """
    if len(levels) == 4:
        a, b, c, d = levels
        tuple_of = lambda o, w: (floor(o * a / w), floor(o * b / w), floor(o * c / w), floor(o * d / w))  # noqa: E731
    else:
        tuple_of = lambda o, w: tuple([floor(o * L / w) for L in levels])  # noqa: E731
    top = max(levels, default=0)
    shifts = tuple((top // L).bit_length() - 1 if L > 0 else -1 for L in levels)
    if top < 1 or any(s < 0 or L << s != top for L, s in zip(levels, shifts)):
        return tuple_of, _same

    def finest(o: float, w: float) -> int | tuple[int, ...]:
        q = floor(o * top / w)
        return q if 0 <= q <= top else tuple_of(o, w)

    def symbols(key: int | tuple[int, ...]) -> tuple[int, ...]:
        return tuple([key >> s for s in shifts]) if type(key) is int else key

    return finest, symbols


def _same(key: tuple[int, ...]) -> tuple[int, ...]:
    """The symbols of a tuple key: the key itself."""
    return key


def _gather(indexes: list[int]) -> Callable[[list[int]], tuple[int, ...] | list[int]]:
    """``seq -> the items of seq at indexes``, in one C call (and picklable)."""
    if len(indexes) > 1:
        return itemgetter(*indexes)
    first = indexes[0] if indexes else 0
    return itemgetter(slice(first, first + len(indexes)))  # 0 or 1 item: a list
