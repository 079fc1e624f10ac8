"""The time a partition's dispatcher runs on: the wall clock, or the alert events' own time.

``timings.clock: wall`` (the default) runs the engine of a partition on the
wall clock. ``timings.clock: event`` runs it on :class:`EventClock`: the
latest alert event time seen in the partition plus the wall time elapsed
since it was seen. A replay of recorded data at any speed (years-old
exports, an accelerated simulation) then keeps keep-firing-for, flapping,
group waits and intervals, escalations and reminders in the data's own
time, while between events the clock still moves on so timers fall due.

Each :class:`~alerts.runtime.partition.PartitionState` has its own
(partitions are independent: each follows its own events).
"""

from __future__ import annotations

from typing import Callable

__all__ = ["EventClock"]


class EventClock:
    """Event time that keeps moving when no event arrives.

    ``now()`` is the latest event time :meth:`observe`\\ d plus the wall
    time elapsed since then; it never goes back (an event older than the
    latest one does not move it). Before any event it is the wall clock
    (nothing can be pending then: a restarted partition starts from the
    latest event time in its state file, see :meth:`observe`).
    """

    def __init__(self, wall: Callable[[], float]) -> None:
        self._wall = wall
        self._latest: float | None = None
        self._seen_at = 0.0

    def observe(self, event_time: float | None) -> None:
        """An event of ``event_time`` was seen (``None``: nothing to learn)."""
        if event_time is None:
            return
        wall = self._wall()
        if self._latest is None or event_time > self.now():
            self._latest, self._seen_at = event_time, wall

    def reading(self) -> tuple[float | None, float]:
        """What the clock knows now, for :meth:`rewind`."""
        return self._latest, self._seen_at

    def rewind(self, reading: tuple[float | None, float] | None) -> None:
        """Forget the events observed since :meth:`reading` gave ``reading``."""
        if reading is not None:
            self._latest, self._seen_at = reading

    def __call__(self) -> float:
        return self.now()

    def now(self) -> float:
        if self._latest is None:
            return self._wall()
        return self._latest + (self._wall() - self._seen_at)

