"""Stream time for the no-data checks: how late it is for a sensor when no reading comes.

:class:`StreamClock` is one stream's time: the latest time seen plus the wall
time since. :class:`SensorClocks` gives each sensor its own time on its
partition's pace (docs/streams.md, "Stale sensors"). The worker ticks every
sensor's checks at its :meth:`SensorClocks.now`.

The wall time counts only while the stream is caught up: a stream told it is
:meth:`StreamClock.behind` (records wait in Kafka that the worker has not
processed) moves on only with its readings until it is told it is
:meth:`StreamClock.caught_up` again, so a worker that stalls or has a backlog
does not call its queued sensors silent.

Nor does the wall time count past what the stream's *sources* have
delivered: a gateway that tells its intake progress
(cityeye/intake_progress.py) "everything I received before ``until`` is
ahead of this record" bounds the stream's clock at ``until``
(:meth:`StreamClock.intake`), so a gateway that is starved, paused or
draining a broker backlog does not make its sensors silent either. A source
that has said nothing for ``intake_silence_s`` no longer holds the clock
(a gateway gone for good: its sensors go stale, late, rather than never).
"""

from __future__ import annotations

import math
from typing import Any, Callable, Iterable, NamedTuple

__all__ = ["StreamClock", "SensorClocks", "INTAKE_SILENCE_S"]

#: seconds after which a source's last intake progress no longer holds a stream's clock
INTAKE_SILENCE_S = 900.0


class StreamClock:
    """Stream time that keeps moving when no reading arrives.

    ``now()`` is the latest reading time seen plus the wall time elapsed
    since it was seen, so a simulated clock running faster or slower than
    the wall clock (a replay, an accelerated simulation) still gets its
    stale checks evaluated in its own time scale between readings.

    The wall time counts only up to the moment the stream's content is known
    (:meth:`behind`, :meth:`caught_up`) and its sources' intake is complete
    (:meth:`intake`); by default always (the wall clock is trusted until the
    stream is said to be behind, and for a stream whose sources never tell).
    """

    def __init__(self, monotonic: Callable[[], float], intake_silence_s: float = INTAKE_SILENCE_S) -> None:
        self._monotonic = monotonic
        self._latest: float | None = None
        self._seen_at = 0.0
        #: monotonic time up to which the stream's content is known (inf: up to now)
        self._known_until = math.inf
        #: when the stream was last caught up (-inf: never said)
        self._caught_up_at = -math.inf
        self.intake_silence_s = intake_silence_s
        #: source -> (monotonic time its intake is complete up to, monotonic time it said so)
        self._sources: dict[str, tuple[float, float]] = {}
        #: the least of the sources' intake times (inf: no source tells), and the oldest time one was heard
        self._intake_until = math.inf
        self._oldest_heard = math.inf

    def intake(self, source: str, until: float, at: float | None = None) -> None:
        """Source ``source`` told (at monotonic time ``at``, default now) that everything it received
        before monotonic time ``until`` is in the stream ahead of this point.

        The bound never moves back: a source's intake time only grows, and a
        source first heard starts no lower than the bound already in force
        (the wall time it was heard at, when it is the first), so the
        stream's time never goes back either.
        """
        heard = self._monotonic() if at is None else at
        prev = self._sources.get(source)
        if prev is None:
            floor = self._intake_until if self._sources else heard
        else:
            floor = prev[0]
        self._sources[source] = (until if until > floor else floor, heard)
        self._bound_intake()

    def _bound_intake(self) -> None:
        sources = self._sources.values()
        self._intake_until = min((u for u, _ in sources), default=math.inf)
        self._oldest_heard = min((h for _, h in sources), default=math.inf)

    def intake_lags(self, at: float | None = None) -> dict[str, float]:
        """Per source holding the clock, how long (s) before monotonic time ``at`` its intake is known complete."""
        at = self._monotonic() if at is None else at
        self._intake_bound(at)  # sources silent too long hold nothing: not reported
        return {source: at - until for source, (until, _) in self._sources.items()}

    def _intake_bound(self, at: float) -> float:
        """How far the sources' intake is complete at monotonic time ``at`` (sources silent too long left out)."""
        if at - self._oldest_heard > self.intake_silence_s:
            limit = at - self.intake_silence_s
            self._sources = {s: v for s, v in self._sources.items() if v[1] >= limit}
            self._bound_intake()
        return self._intake_until

    def behind(self) -> None:
        """Records of this stream wait unprocessed: no wall time past the last catch-up counts."""
        self._known_until = self._caught_up_at

    def caught_up(self, at: float | None = None) -> None:
        """Everything the stream held at monotonic time ``at`` (default: now) is processed."""
        self._caught_up_at = self._monotonic() if at is None else at
        self._known_until = math.inf

    def observe(self, ts: float, at: float | None = None) -> None:
        """A reading's time ``ts``, seen at monotonic time ``at`` (default: now)."""
        if self._latest is None or ts >= self._latest:
            self._latest = ts
            self._seen_at = self._monotonic() if at is None else at

    def now(self, at: float | None = None) -> float | None:
        """The stream time at monotonic time ``at`` (default: now)."""
        if self._latest is None:
            return None
        return self._latest + self.elapsed(self._monotonic() if at is None else at)

    def elapsed(self, at: float) -> float:
        """Wall time since the latest reading that counts at monotonic time ``at`` (never negative)."""
        known = self._known_until
        if self._sources:
            intake = self._intake_bound(at)
            if intake < known:
                known = intake
        gone = (at if at < known else known) - self._seen_at
        return gone if gone > 0.0 else 0.0


class _Seen(NamedTuple):
    """One reading's sensor and time, for :meth:`SensorClocks.observe`."""

    sensor_id: str
    ts: float


class SensorClocks:
    """Each sensor's own stream time, for its no-data checks.

    A sensor's time is its latest reading's time plus how far its
    partition's pace clock moved since that reading arrived. The pace clock
    is a :class:`StreamClock` of *progress*: each sensor's time since its
    first reading seen here, the furthest of them, moving on with the wall
    clock when no reading comes. So a sensor is judged on its own
    timestamps -- a gauge replayed from 2015 beside one from 2020 in the
    same partition is not stale because the other is five years ahead --
    while its elapsed time runs at the partition's pace (an accelerated
    simulation, a replay, or real time), and only while the partition is
    caught up (:meth:`behind`, :meth:`caught_up`): a sensor whose readings
    wait in a backlog is not silent.
    """

    def __init__(self, monotonic: Callable[[], float], intake_silence_s: float = INTAKE_SILENCE_S) -> None:
        self._monotonic = monotonic
        self.intake_silence_s = intake_silence_s
        self.partitions: dict[Any, StreamClock] = {}
        self._first: dict[str, float] = {}
        #: sensor -> (partition, latest reading time, pace clock when it arrived)
        self._seen: dict[str, tuple[Any, float, float]] = {}

    def _new_pace(self, partition: Any) -> StreamClock:
        """A partition's pace clock, new (its first reading or intake progress)."""
        pace = self.partitions[partition] = StreamClock(self._monotonic, self.intake_silence_s)
        return pace

    def observe(self, partition: Any, sensor_id: str, ts: float, at: float | None = None) -> None:
        """A reading of ``sensor_id`` at ``ts`` on ``partition``, seen at monotonic time ``at`` (default: now)."""
        self.observe_readings(partition, (_Seen(sensor_id, ts),), at)

    def observe_readings(self, partition: Any, readings: Iterable[Any], at: float | None = None) -> None:
        """:meth:`observe` each of ``readings`` (anything with ``sensor_id`` and ``ts``: a record's,
        in its order) on ``partition``, all seen at monotonic time ``at`` (default: now)."""
        pace = self.partitions.get(partition) or self._new_pace(partition)
        if at is None:
            at = self._monotonic()
        first_of, seen = self._first, self._seen
        for reading in readings:  # runs for every reading: written out, no call per reading
            sensor_id, ts = reading.sensor_id, reading.ts
            first = first_of.get(sensor_id)
            if first is None:
                first = first_of[sensor_id] = ts
            # pace.observe(ts - first, at) and pace.now(at), the advancing case written out
            progress, latest = ts - first, pace._latest
            if latest is None or progress >= latest:
                pace._latest = mark = progress
                pace._seen_at = at
            else:
                mark = latest + pace.elapsed(at)
            prev = seen.get(sensor_id)
            if prev is None or prev[0] != partition or ts >= prev[1]:
                seen[sensor_id] = (partition, ts, mark)

    def now(self, sensor_id: str) -> float | None:
        seen = self._seen.get(sensor_id)
        if seen is None:
            return None
        partition, last, at = seen
        return last + (self.partitions[partition].now() - at)

    def behind(self, partition: Any) -> None:
        """``partition`` has records waiting: its sensors age only with its readings (StreamClock.behind)."""
        pace = self.partitions.get(partition)
        if pace is not None:
            pace.behind()

    def caught_up(self, partition: Any, at: float | None = None) -> None:
        """``partition`` had nothing waiting at monotonic time ``at``: wall time counts again."""
        pace = self.partitions.get(partition)
        if pace is not None:
            pace.caught_up(at)

    def intake(self, partition: Any, source: str, until: float, at: float | None = None) -> None:
        """``source`` has everything it received before monotonic time ``until`` in ``partition`` up to
        here: its sensors age no further (StreamClock.intake)."""
        (self.partitions.get(partition) or self._new_pace(partition)).intake(source, until, at)

    def intake_lags(self) -> dict[str, float]:
        """Per source (gateway), the longest it has left any partition's intake unconfirmed (s), as of now."""
        at, lags = self._monotonic(), {}
        for pace in self.partitions.values():
            for source, lag in pace.intake_lags(at).items():
                if lag > lags.get(source, -math.inf):
                    lags[source] = lag
        return lags

    def drop(self, partition: Any) -> None:
        self.partitions.pop(partition, None)
        for sid in [s for s, seen in self._seen.items() if seen[0] == partition]:
            del self._seen[sid]
            self._first.pop(sid, None)
