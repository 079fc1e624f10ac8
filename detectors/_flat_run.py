"""Record-breaking runs of identical readings (a vote of ``multiscale_novelty``).

A sensor that repeats exactly the same value is often stuck, switched off or
reporting a default (a gauge frozen at its last reading, a counter stuck at
0). How long a repeat is normal differs per sensor: some report plateaus of
hundreds of equal readings, others never repeat. :class:`FlatRunRecord`
learns it per sensor: it remembers the longest run of identical readings
completed so far and votes 1 once a run outgrows that record.
"""

from __future__ import annotations

from typing import Any

__all__ = ["FlatRunRecord"]


class FlatRunRecord:
    """Vote 1 when the current run of identical readings breaks the sensor's record.

    The vote for a reading ``v`` is 1 when ``v`` extends the current run of
    exactly equal readings to at least ``min_run`` readings *and* beyond
    ``1 + margin`` times the longest run completed so far; otherwise 0. A
    sensor's first run never votes (there is no record yet), and a run votes
    at most once once :meth:`fired` has been called for it.

    Parameters
    ----------
    min_run
        Shortest run that may vote (readings); ``0`` or ``None`` turns the
        vote off.
    margin
        How much longer than the record a run must be (0.1 = 10 %).

    Examples
    --------
    >>> rec = FlatRunRecord(min_run=3, margin=0.1)
    >>> votes = []
    >>> readings = [5, 5, 5, 5, 1, 2, 2, 2, 3, 4, 4, 4, 4, 4, 4]
    >>> for v in readings:
    ...     votes.append(rec.vote(v))
    ...     rec.learn(v)
    >>> # the first run sets the record (4); the run of 4s breaks it at its 5th reading
    >>> [v for v, vote in zip(readings, votes) if vote]
    [4, 4]
    >>> rec.fired()  # an alarm was raised for this run: it votes no more
    >>> rec.vote(4), rec.vote(7)
    (0.0, 0.0)
    """

    def __init__(self, min_run: int | None = 48, margin: float = 0.1) -> None:
        self.min_run = max(2, int(min_run)) if min_run else 0
        self.margin = float(margin)
        self._last: float | None = None
        self._run = 0  # length of the current run of identical readings
        self._record = 0  # longest run completed so far
        self._fired = False  # the current run has alarmed

    def vote(self, v: float) -> float:
        """1.0 if ``v`` makes the current run record-breaking, else 0.0 (no learning)."""
        if not self.min_run or self._fired or v != self._last:
            return 0.0
        run = self._run + 1
        if run < self.min_run or self._record <= 0 or run <= (1.0 + self.margin) * self._record:
            return 0.0
        return 1.0

    def learn(self, v: float) -> None:
        """Extend the current run with ``v`` or close it and start a new one."""
        if v == self._last:
            self._run += 1
            return
        if self._run > self._record:
            self._record = self._run
        self._run, self._fired, self._last = 1, False, v

    def step(self, v: float) -> float:
        """:meth:`vote` for ``v``, then :meth:`learn` it (one call)."""
        if v != self._last:  # a new value: a new run, no vote
            if self._run > self._record:
                self._record = self._run
            self._run, self._fired, self._last = 1, False, v
            return 0.0
        vote = self.vote(v)
        self._run += 1
        return vote

    def fired(self) -> None:
        """The current run has raised an alarm: it votes no more."""
        self._fired = True

    def snapshot(self) -> dict[str, Any]:
        return {"last": self._last, "run": self._run, "record": self._record, "fired": self._fired}

    def restore(self, state: dict[str, Any] | None) -> None:
        state = state or {}
        last = state.get("last")
        self._last = None if last is None else float(last)
        self._run = int(state.get("run", 0))
        self._record = int(state.get("record", 0))
        self._fired = bool(state.get("fired", False))
