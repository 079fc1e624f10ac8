"""One unit of dispatcher state: a state file with its engine, timers, delivery and history.

Each owned partition of ``alerts.grouped`` has one :class:`PartitionState`
over ``dispatcher-p<N>.sqlite``, started when the partition is assigned and
stopped when it is revoked (alerts/runtime/ownership.py).

* :meth:`PartitionState.apply_records` applies a batch of Kafka records in
  one store transaction (the caller commits the offsets afterwards);
  undecodable events are dead-lettered, and records carrying the action header are API actions (alerts/runtime/actions.py) applied in
  order with the events;
* :meth:`PartitionState.run` runs the timer loop (``timings.tick``), the
  delivery workers and the history shipper until its stop event is set.

The engine runs on :attr:`PartitionState.clock`: the wall clock, or with
``timings.clock: event`` the partition's
:class:`~alerts.runtime.event_clock.EventClock` (the latest event time seen
plus the wall time since). On event time each event is applied at its own
time, after the timers due before it (a batch of a fast replay spans hours
of the data's time); a restarted partition resumes from the latest event
time in its state file. Delivery retries stay on the wall clock (a
receiver's outage is real time).

Everything touching the store runs synchronously between awaits, so the
single SQLite connection is never used concurrently.
"""

from __future__ import annotations

import asyncio
import logging
import time
from pathlib import Path
from typing import Any, Awaitable, Callable

from alerts.runtime.metrics import observe_applied
from alerts.runtime.actions import ACTION_HEADER, SOURCE_HEADER, apply_action, header
from alerts.config import AlertingConfig
from alerts.runtime.delivery import DeliveryManager
from alerts.runtime.event_clock import EventClock
from alerts.pipeline.dispatch_engine import Engine
from alerts.runtime.history import HistoryShipper
from alerts.notification import Notifier
from alerts.runtime.store import Store
from cityeye.config import Settings
from cityeye.contracts import decode_alert_event
from cityeye.sensor_registry import SensorRegistry

__all__ = ["PartitionState", "RETENTION_S"]

log = logging.getLogger(__name__)

#: resolved alerts, the notification log and applied actions are kept this long (history is in InfluxDB)
RETENTION_S = 30 * 86400


class PartitionState:
    """Store, engine, delivery workers, timers and history shipper of one state file."""

    def __init__(self, path: str | Path, settings: Settings, alerting: AlertingConfig, notifiers: dict[str, Notifier],
                 registry: SensorRegistry | None, publish_deadletter: Callable[[dict[str, Any]], Awaitable[None]],
                 clock: Callable[[], float]) -> None:
        self.alerting, self.wall = alerting, clock
        self.store = Store(path)
        #: the partition's event time (``timings.clock: event``), else None
        self.event_clock: EventClock | None = None
        #: what the engine runs on: the wall clock or the event clock
        self.clock: Callable[[], float] = clock
        if alerting.timings.clock == "event":
            self.event_clock = self.clock = EventClock(clock)
            self.event_clock.observe(self.store.latest_event_time())
        self.engine = Engine(alerting, self.store, registry)
        self.history: HistoryShipper | None = None
        if settings.influx.enabled:
            from alerts.sinks.influx import InfluxSink

            self.history = HistoryShipper(self.store, InfluxSink(settings.influx), settings.influx.batch_size)
        else:
            self.store.history_enabled = False  # the timelines in the store remain
        #: clock time of the last completed timer tick (a barrier: everything due by then was decided)
        self.ticked_at, self._ticked_mono = 0.0, float("-inf")
        self.delivery = DeliveryManager(self.engine, notifiers, alerting.delivery, publish_deadletter, self.clock,
                                        on_commit=self.committed, wall=clock)

    def committed(self) -> None:
        """After a store commit: wake the delivery workers and the history shipper."""
        woken, self.engine.woken = self.engine.woken, set()
        self.delivery.wake(woken)
        if self.history is not None:
            self.history.wake.set()

    # -- Kafka records ----------------------------------------------------------
    def apply_records(self, records: list[Any]) -> list[dict[str, Any]]:
        """Apply a batch of Kafka records in one transaction; returns dead letters to publish.

        If applying fails unexpectedly, the batch is rolled back and
        re-applied one record per transaction so that only the record at
        fault is dead-lettered.
        """
        now = self.clock()
        started = self.event_clock.reading() if self.event_clock is not None else None
        dead: list[dict[str, Any]] = []
        try:
            with self.store.transaction():
                for rec in records:
                    now = self._apply_record(rec, now, dead)
                self.engine.tick(now)  # flush what became due at once, not a tick later
            self._ticked(now)
            observe_applied(records)
            return dead
        except Exception:
            log.exception("batch of %d alert events failed; re-applying one by one", len(records))
            self.engine.reload()
            if self.event_clock is not None:
                self.event_clock.rewind(started)  # the batch's events are applied again, each at its time
        dead, now = [], self.clock()
        for rec in records:
            try:
                with self.store.transaction():
                    now = self._apply_record(rec, now, dead)
            except Exception as exc:
                self.engine.reload()
                letter = self._event_letter(rec, f"internal error applying the event: {type(exc).__name__}: {exc}", now)
                with self.store.transaction():
                    self.store.add_deadletter("alert_event", letter["reason"], letter, now)
                dead.append(letter)
        return dead

    def _event_letter(self, rec: Any, reason: str, now: float) -> dict[str, Any]:
        """A dead letter naming the record's place; a re-keyed record names its original place in alerts.events."""
        raw = rec.value if isinstance(rec.value, bytes) else b""
        topic, partition, offset = rec.topic, rec.partition, rec.offset
        source = header(rec, SOURCE_HEADER)
        if source is not None:
            try:
                topic, p, o = source.decode().rsplit("/", 2)
                partition, offset = int(p), int(o)
            except (UnicodeDecodeError, ValueError):
                pass  # a foreign header: keep the record's own place
        return {"kind": "alert_event", "reason": reason, "at": now, "topic": topic, "partition": partition,
                "offset": offset, "payload": raw[:16384].decode("utf-8", "replace")}

    def _apply_record(self, rec: Any, now: float, dead: list[dict[str, Any]]) -> float:
        """Apply one record at ``now``; returns the time it was applied at (on event time: the event's)."""
        if header(rec, ACTION_HEADER) is not None:
            problem = apply_action(self.engine, rec.value or b"", now)
            if problem is not None:
                self._dead_letter(rec, problem, now, dead)
            return now
        try:
            ev = decode_alert_event(rec.value)
        except ValueError as exc:
            self._dead_letter(rec, str(exc), now, dead)
            return now
        if self.event_clock is not None:
            now = self._advance(ev.updated_at, now)
        self.engine.apply_event(ev, now)
        return now

    def _advance(self, event_time: float, now: float) -> float:
        """Event time: move the clock to ``event_time``; what fell due before it happens first."""
        assert self.event_clock is not None
        self.event_clock.observe(event_time)
        later = self.event_clock.now()  # earlier than now only for the first event (now was the wall's)
        if later > now:
            self.engine.tick(later)
        return later

    def _dead_letter(self, rec: Any, reason: str, now: float, dead: list[dict[str, Any]]) -> None:
        letter = self._event_letter(rec, reason, now)
        log.warning("alert event at %s[%s]@%s dead-lettered: %s", rec.topic, rec.partition, rec.offset, reason)
        self.store.add_deadletter("alert_event", reason, letter, now)
        dead.append(letter)

    # -- timers, delivery, history ------------------------------------------------
    def _ticked(self, now: float) -> None:
        self.ticked_at, self._ticked_mono = now, time.monotonic()

    async def _tick(self, stop: asyncio.Event) -> None:
        """Tick whenever no batch has ticked the engine for ``timings.tick`` (a full tick costs per group)."""
        interval, next_prune = self.alerting.timings.tick, 0.0
        while not stop.is_set():
            idle = time.monotonic() - self._ticked_mono
            now, wall = self.clock(), self.wall()
            if idle >= interval or wall >= next_prune:
                with self.store.transaction():
                    self.engine.tick(now)
                    if wall >= next_prune:  # hourly on the wall clock, whatever the engine's time
                        # forget only what is old by both clocks (the store stamps some rows with the wall's)
                        self.store.prune(min(now, wall) - RETENTION_S)
                        next_prune = wall + 3600
                self._ticked(now)
                self.committed()
                idle = 0.0
            try:
                await asyncio.wait_for(stop.wait(), timeout=interval - idle)
            except asyncio.TimeoutError:
                pass

    def tasks(self, stop: asyncio.Event, name: str = "") -> list[asyncio.Task]:
        """Start the timer loop, delivery workers and history shipper; they end once ``stop`` is set."""
        tasks = [asyncio.create_task(self._tick(stop), name=f"tick{name}"),
                 asyncio.create_task(self.delivery.run(stop), name=f"delivery{name}")]
        if self.history is not None:
            tasks.append(asyncio.create_task(self.history.run(stop), name=f"history{name}"))
        self.delivery.wake()
        return tasks

    def close(self) -> None:
        self.store.close()
