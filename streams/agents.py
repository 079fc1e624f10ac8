"""The detector runtime and agent: batches, the clock timer, snapshots and alert events.

One agent subscribes to every ``readings.<kind>`` topic. Readings arrive
partitioned by sensor id (single records keyed by it, or aggregated records
of one partition's readings, cityeye/reading_records.py), so each sensor's
readings are in one partition, in order, and no repartitioning is needed: the
agent takes records in batches (``stream.take_events``), runs
:class:`streams.sensor_engine.SensorEngine` on each of their readings
(streams/batch.py) and sends the resulting alert events to ``alerts.events``
keyed by alert id, on a producer of their own (streams/alert_sender.py). A
reading's position is its record's offset (the readings of one record share it).

State lifecycle (details in docs/streams.md; revocation, recovery and
shutdown in streams/lifecycle.py):

* detector state lives in the engine's plain dicts;
* a sensor's state is copied to the snapshot table (changelog-backed) after
  every ``snapshot_every`` of its readings, right after any reading or tick
  that changed one of its alerts, when its partition is revoked and when the
  worker shuts down; the snapshot records the offset of the last reading it
  includes;
* a sensor's first batch also writes a snapshot, so every sensor has one
  that marks where a replay must start;
* snapshots are built and sent by a background task
  (streams/snapshot_writer.py) while the agent goes on; a partition's
  offsets are committed no further than the first offset of the oldest
  batch whose snapshots are not in the broker yet (the commit barrier,
  streams/transport.py);
* when partitions are assigned and the table has recovered, the sensors of
  those partitions are restored from their snapshots; readings at or before
  a snapshot's offset are skipped when Kafka redelivers them, readings
  between a snapshot and the group's committed offset are re-read
  (streams.replay) with their events dropped, and partitions without a
  committed offset are sought to the oldest restored position;
* from then on the stream must deliver each partition's records without a
  hole: records it skipped (Faust may drop the first records after a
  rebalance) are read directly and processed before the record that
  revealed the hole, or on the clock tick when a partition's stream took
  nothing for a whole tick that Faust handed it (streams/holes.py: a
  backlog is not a hole); records below the next offset are in the state
  already and skipped.

Messages that are not readings, and readings whose processing fails, go to
``readings.deadletter`` with the reason; the worker goes on.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any, Iterable, Mapping

import faust
from faust.types import TP

from cityeye.config import KafkaSettings
from cityeye.contracts import AlertEvent
from cityeye.metrics import ConsumerLag, report_lag
from streams import metrics
from streams.alert_sender import AlertSender
from streams.batch import BatchProcessing
from streams.clocks import SensorClocks
from streams.lifecycle import PartitionLifecycle
from streams.sensor_engine import SensorEngine
from streams.snapshot_writer import SnapshotWriter
from streams.tables import SnapshotTable
from streams.topics import StreamTopics
from streams.transport import CityEyeFaustApp

__all__ = ["DetectorRuntime", "attach_agents", "LAG_INTERVAL_S", "TICK_CHUNK"]

log = logging.getLogger(__name__)

#: seconds between two reports of the worker's consumer lag (cityeye_consumergroup_lag)
LAG_INTERVAL_S = 5.0
#: sensors ticked per turn of the runtime's lock (a batch of readings waits for at most this many)
TICK_CHUNK = 100


class DetectorRuntime(BatchProcessing, PartitionLifecycle):
    """The worker's in-process state: engine, sensors per partition, clocks, snapshot writer, counters.

    ``alerts`` sends the alert events; ``snapshots`` holds the sensors'
    snapshots, which :attr:`writer` builds and writes in the background.
    """

    def __init__(self, app: faust.App, engine: SensorEngine, topics: StreamTopics, snapshots: SnapshotTable,
                 snapshot_every: int, alerts: AlertSender, kafka: KafkaSettings | None = None,
                 live_rules: Any = None) -> None:
        self.app = app
        self.alerts = alerts
        #: the rules in force, reloaded when their file changes (None: a fixed checks factory)
        self.live_rules = live_rules
        #: where to re-read the readings a crash left out of the snapshots (None: do not)
        self.kafka = kafka
        self.engine = engine
        self.topics = topics
        self.snapshots = snapshots
        self.snapshot_every = snapshot_every
        self.sensors_by_tp: dict[TP, set[str]] = {}
        self.tp_of: dict[str, TP] = {}
        #: each sensor's stream time (its own readings, its partition's pace)
        self.clocks = SensorClocks(time.monotonic)
        #: serialises batches, ticks and lifecycle hooks (they interleave at awaits otherwise)
        self._lock = asyncio.Lock()
        self.writer = SnapshotWriter(snapshots, self._build_snapshot, self._lock)
        #: set by on_shutdown: ticks after it do nothing (their events and snapshots would be lost)
        self.stopped = False
        self.readings = 0
        #: readings re-read after a restore to bring snapshots up to the committed offsets
        self.replayed = 0
        #: records the stream skipped and the worker read directly (see _read_skipped)
        self.refilled = 0
        #: per readings partition, the offset the stream must deliver next (known once aligned or read)
        self.next_offset: dict[TP, int] = {}
        #: next_offset at the last clock tick (a partition whose offset stays put may have a hole at its end)
        self._last_seen_offset: dict[TP, int] = {}
        self.events_sent = 0
        self.dead_letters = 0
        #: sensors ticked per turn of the lock (see :meth:`tick`)
        self.tick_chunk = TICK_CHUNK

    # -- clock ticks and rules ------------------------------------------------------------

    async def tick(self) -> None:
        """Clock re-evaluation of every sensor, per partition in that partition's stream time.

        The sensors are ticked :attr:`tick_chunk` at a time, each chunk under
        the lock with its events sent (and acknowledged) before the lock is let
        go: batches of readings run between chunks instead of waiting for all
        sensors' checks (docs/streams.md, "A tick in chunks"). A sensor's events
        still precede anything it emits later, and its snapshot is marked only
        once the broker has them.
        """
        async with self._lock:
            if self.stopped:
                return
            if self.kafka is not None:
                await self._fill_stalled()
            self._mark_backlogs()
            sensor_ids = [sid for sensors in list(self.sensors_by_tp.values()) for sid in sensors]
        chunk = self.tick_chunk
        for start in range(0, len(sensor_ids), chunk):
            if start:
                await asyncio.sleep(0)  # let a batch waiting for the lock (or the consumer) in
            async with self._lock:
                if self.stopped:
                    return
                await self._tick_sensors(sensor_ids[start:start + chunk])

    async def _tick_sensors(self, sensor_ids: list[str]) -> None:
        """Tick ``sensor_ids`` each at its own stream time; send their events, then mark their snapshots."""
        out: list[AlertEvent] = []
        touched: set[str] = set()
        now_of, tick = self.clocks.now, self.engine.tick
        for sid in sensor_ids:
            now = now_of(sid)
            if now is None:
                continue
            emitted = tick(now, [sid])
            if emitted:
                out.extend(emitted)
                touched.add(sid)
        await self._send_then_snapshot(out, touched)

    def _mark_backlogs(self) -> None:
        """Tell the clocks which partitions have records waiting (high watermark beyond the next offset).

        Their sensors then age only with their readings, not with the wall
        clock, until the worker has caught up: a stalled or lagging worker
        must not call its queued sensors silent (docs/streams.md, "Stale sensors").
        """
        now, highwater, clocks = time.monotonic(), self.app.consumer.highwater, self.clocks
        for tp in self.sensors_by_tp:
            try:
                end, expected = highwater(tp), self.next_offset.get(tp)
            except AssertionError:  # no longer assigned (a rebalance under way): the wall clock, as before
                end = expected = None
            if end is not None and expected is not None and end > expected:
                clocks.behind(tp)
            else:
                clocks.caught_up(tp, now)

    async def reload_rules(self) -> bool:
        """Apply the rules file if it changed (streams/live_rules.py); True if new rules are in force."""
        if self.live_rules is None:
            return False
        async with self._lock:
            if not self.live_rules.reload():
                return False
            self.engine.rules_version = self.live_rules.version
            events, changed = self.engine.rebuild_checks()
            await self._send_then_snapshot(events, changed)
            log.warning("rules version %s in force: checks of %d sensor(s) rebuilt, the others kept their state",
                        self.live_rules.version, len(changed))
            return True

    # -- helpers ------------------------------------------------------------------

    def _place(self, sid: str, tp: TP) -> None:
        old = self.tp_of.get(sid)
        if old is not None:
            self.sensors_by_tp.get(old, set()).discard(sid)
        self.tp_of[sid] = tp
        self.sensors_by_tp.setdefault(tp, set()).add(sid)

    def _snapshot(self, sensor_ids: Iterable[str], first: Mapping[TP, int] | None = None) -> None:
        """Have the snapshot writer save these sensors' state.

        The barrier of a sensor's snapshot is ``first[tp]``, the first offset
        of its partition the caller processed (a batch), else the partition's
        next offset (a tick, a revocation, a rules change): the group commits
        no further until the snapshot is in the broker.
        """
        by_tp: dict[TP, list[str]] = {}
        for sid in sensor_ids:
            tp = self.tp_of.get(sid)
            if tp is not None:
                by_tp.setdefault(tp, []).append(sid)
        for tp, sids in by_tp.items():
            barrier = first.get(tp) if first else None
            self.writer.mark(tp, sids, self.next_offset.get(tp, 0) if barrier is None else barrier)

    def _snapshot_dirty(self, sensor_ids: Iterable[str]) -> list[str]:
        """Have those of ``sensor_ids`` with unsaved readings snapshotted (barrier: :meth:`_snapshot`'s); returns them."""
        dirty = [sid for sid in sensor_ids if self.engine.dirty(sid)]
        self._snapshot(dirty)
        return dirty

    def _build_snapshot(self, sid: str) -> tuple[TP, dict[str, Any]] | None:
        """A held sensor's readings partition and snapshot (marking it clean), for the writer; None once let go."""
        tp = self.tp_of.get(sid)
        if tp is None or sid not in self.engine:
            return None
        return tp, self.engine.snapshot(sid)

    async def _send_then_snapshot(self, events: list[AlertEvent], sensor_ids: Iterable[str],
                                  first: Mapping[TP, int] | None = None) -> None:
        """Send ``events`` and wait until the broker has them, then have ``sensor_ids`` snapshotted
        (barriers ``first``, see :meth:`_snapshot`).

        Waiting matters: snapshots built afterwards may include the readings
        behind these events, and a reading included in a snapshot is never
        processed again, so its events must be stored before the snapshot.
        """
        await self.alerts.send(events)
        self.events_sent += len(events)
        self._snapshot(sensor_ids, first)


def attach_agents(app: CityEyeFaustApp, runtime: DetectorRuntime, *, batch_size: int, batch_within_s: float,
                  tick_interval_s: float, rules_check_s: float = 0.0) -> None:
    """Register the detector agent, the clock timer, the rules watch, the lifecycle hooks and the
    snapshot writer's commit barrier on ``app``."""
    app.commit_barriers.append(runtime.writer.commit_limits)

    if runtime.live_rules is not None and rules_check_s > 0:
        @app.timer(interval=rules_check_s, name="cityeye-rules-watch")
        async def rules_watch() -> None:
            await runtime.reload_rules()

    @app.agent(runtime.topics.readings, name="cityeye-detectors")
    async def detectors(stream: faust.StreamT) -> None:
        async for events in stream.take_events(batch_size, within=batch_within_s):
            await runtime.process_events(events)

    @app.timer(interval=tick_interval_s, name="cityeye-detector-clock")
    async def detector_clock() -> None:
        await runtime.tick()

    lag = ConsumerLag(app.conf.id)
    intake_reported: set[str] = set()

    @app.timer(interval=LAG_INTERVAL_S, name="cityeye-consumer-lag")
    async def consumer_lag() -> None:
        nonlocal intake_reported
        # the position from Faust's monitor, never a call into the consumer thread that may wait on a reset
        await report_lag(app.consumer, lag, set(runtime.topics.readings_names),
                         position=metrics.monitor_position(app))
        intake_reported = metrics.report_intake_lags(runtime.clocks.intake_lags(), intake_reported)

    runtime.snapshots.table.on_recover(runtime.on_recovered)

    @app.on_partitions_revoked.connect
    async def _revoked(app: faust.App, revoked: set[TP], **kwargs: Any) -> None:
        await runtime.on_revoked(revoked)

    @app.on_before_shutdown.connect
    async def _shutdown(app: faust.App, **kwargs: Any) -> None:
        await runtime.on_shutdown()
