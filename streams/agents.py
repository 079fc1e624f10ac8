"""The detector agent, its clock timer and its state lifecycle.

One agent subscribes to every ``readings.<kind>`` topic. Readings arrive
partitioned by sensor id (single records keyed by it, or aggregated records
of one partition's readings, cityeye/reading_records.py), so each sensor's
readings are in one partition, in order, and no repartitioning is needed: the
agent takes records in batches (``stream.take_events``), runs
:class:`streams.sensor_engine.SensorEngine` on each of their readings and sends
the resulting alert events to ``alerts.events`` keyed by alert id. A reading's
position is its record's offset (the readings of one record share it).

State lifecycle (details in docs/streams.md):

* detector state lives in the engine's plain dicts;
* a sensor's state is copied to the snapshot table (changelog-backed) after
  every ``snapshot_every`` of its readings, right after any reading or tick
  that changed one of its alerts, when its partition is revoked and when the
  worker shuts down; the snapshot records the offset of the last reading it
  includes;
* a sensor's first batch also writes a snapshot, so every sensor has one
  that marks where a replay must start;
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
from typing import Any, Iterable

import faust
from aiokafka.structs import ConsumerRecord
from faust.types import TP, EventT

from cityeye.config import KafkaSettings
from cityeye.contracts import AlertEvent, to_json
from cityeye.kafka import read_ranges
from cityeye.errors import ValidationError
from cityeye.metrics import ConsumerLag, report_lag
from cityeye.reading_records import RejectedReading, encode_reading, readings_of
from streams import metrics
from streams.clocks import SensorClocks
from streams.grouping import by_sensor
from streams.holes import dropped_range, forget_taken
from streams.sensor_engine import SensorEngine
from streams.models import dead_letter
from streams.replay import committed_offsets
from streams.tables import SnapshotTable
from streams.topics import StreamTopics

__all__ = ["DetectorRuntime", "attach_agents", "LAG_INTERVAL_S"]

log = logging.getLogger(__name__)

#: seconds between two reports of the worker's consumer lag (cityeye_consumergroup_lag)
LAG_INTERVAL_S = 5.0


class DetectorRuntime:
    """The worker's in-process state: engine, sensors per partition, clocks, counters."""

    def __init__(self, app: faust.App, engine: SensorEngine, topics: StreamTopics, snapshots: SnapshotTable,
                 snapshot_every: int, kafka: KafkaSettings | None = None, live_rules: Any = None) -> None:
        self.app = app
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

    # -- per batch ---------------------------------------------------------------

    async def process_events(self, events: Iterable[EventT]) -> None:
        """Run the engine on a batch of reading events and send what it emits."""
        async with self._lock:
            await self._process_events(events)

    async def _process_events(self, events: Iterable[EventT]) -> None:
        batch = _Batch()
        next_offset = self.next_offset
        for event in events:
            msg = event.message
            tp, offset = msg.tp, msg.offset
            expected = next_offset.get(tp)
            if expected is not None and offset < expected:
                continue  # in the state already: a redelivery, or read directly (_read_skipped)
            if expected is not None and offset > expected and self.kafka is not None:
                await self._process_skipped(tp, expected, offset, batch)
            await self._process_record(tp, offset, msg.key, msg.value, msg.headers, batch)
            next_offset[tp] = offset + 1
        # a record's readings are all processed before any snapshot: a snapshot never splits a record
        await self._send_alerts(batch.out)
        await self._snapshot(batch.touched)
        metrics.observe_readings(batch.done, batch.started)

    async def _process_record(self, tp: TP, offset: int, key: bytes | None, value: bytes | None,
                              headers: Any, batch: "_Batch") -> None:
        """Run the engine on the readings of one record; collect what it emits in ``batch``.

        Each sensor's readings run one after the other (streams/grouping.py: its
        state stays in the CPU's caches); the stream clocks take them in the
        record's order.
        """
        engine, seen_at = self.engine, time.monotonic()
        # bound once a record: the loops below run for every reading
        tp_of, due, every = self.tp_of, engine.due, self.snapshot_every
        done, touched = batch.done.append, batch.touched
        items = readings_of(value, key, headers)
        refused: set[int] = set()  # id() of the items not processed
        for item in by_sensor(items):
            if type(item) is RejectedReading:
                refused.add(id(item))
                await self._dead_letter(item.raw, item.reason, tp.topic, key or _key_of(item))
                continue
            sid = item.sensor_id
            try:
                new = sid not in engine and not self._restore_one(sid, tp)
                emitted = engine.process(item, position=offset)
            except ValidationError as exc:
                refused.add(id(item))
                await self._dead_letter(encode_reading(item), str(exc), tp.topic, sid.encode())
                continue
            except Exception as exc:  # a bug must cost one reading (dead-lettered), not the worker
                refused.add(id(item))
                log.exception("processing a reading of %s at %s[%d]@%d failed", sid, tp.topic, tp.partition, offset)
                await self._dead_letter(encode_reading(item), f"processing failed: {type(exc).__name__}: {exc}",
                                        tp.topic, sid.encode())
                continue
            self.readings += 1
            done(item)
            if tp_of.get(sid) != tp:
                self._place(sid, tp)
            if emitted:
                batch.out.extend(emitted)
                touched.add(sid)
            elif new or due(sid, every):  # a first snapshot bounds any replay
                touched.add(sid)
        observe = self.clocks.observe
        for item in items:
            if not refused or id(item) not in refused:
                observe(tp, item.sensor_id, item.ts, seen_at)

    async def _process_skipped(self, tp: TP, start: int, end: int, batch: "_Batch") -> None:
        for rec in await self._read_skipped(tp, start, end):
            await self._process_record(tp, rec.offset, rec.key, rec.value, rec.headers, batch)
        self.next_offset[tp] = max(self.next_offset.get(tp, end), end)

    async def _fill_stalled(self) -> None:
        """Read directly what a partition's stream dropped and has not delivered for a whole clock interval.

        A hole at the end of what was produced shows no later record; a
        partition whose next offset did not move since the last tick gets
        the records Faust handed to its stream and the stream dropped read
        directly (streams/holes.py: a backlog still on its way is left to
        the stream; the stream's copies, if they come, are skipped).
        """
        batch, stalled = _Batch(), self._last_seen_offset
        self._last_seen_offset = dict(self.next_offset)
        for tp, expected in list(self.next_offset.items()):
            if stalled.get(tp) != expected:
                continue
            hole = dropped_range(self.app, tp, expected, self.app.consumer.highwater(tp))
            if hole is not None:
                await self._process_skipped(tp, *hole, batch)
        await self._send_alerts(batch.out)
        await self._snapshot(batch.touched)

    async def _read_skipped(self, tp: TP, start: int, end: int) -> list[ConsumerRecord]:
        """The records ``[start, end)`` of ``tp`` that the stream skipped, read directly.

        The stream must deliver each partition's records from the offset the
        worker resumed at (the committed offset after a rebalance) without a
        hole; a consumer that drops records around a rebalance (Faust clears
        its stream buffers when flow resumes and may already have moved its
        read position past them) would otherwise lose readings for good.
        """
        records: list[ConsumerRecord] = []
        # what the broker does not have (any more) cannot be waited for: given up after idle fetches
        await read_ranges(self.kafka, {(tp.topic, tp.partition): (start, end)}, records.append,
                          give_up_after_idle=3)
        self.refilled += len(records)
        log.warning("the stream skipped offsets %d..%d of %s[%d]: read %d record(s) of them directly",
                    start, end - 1, tp.topic, tp.partition, len(records))
        return records

    async def tick(self) -> None:
        """Clock re-evaluation of every sensor, per partition in that partition's stream time."""
        async with self._lock:
            await self._tick()

    async def _tick(self) -> None:
        if self.kafka is not None:
            await self._fill_stalled()
        self._mark_backlogs()
        out: list[AlertEvent] = []
        touched: set[str] = set()
        for sensors in list(self.sensors_by_tp.values()):
            for sid in list(sensors):
                now = self.clocks.now(sid)
                if now is None:
                    continue
                emitted = self.engine.tick(now, [sid])
                out.extend(emitted)
                touched.update(e.sensor_id for e in emitted)
        await self._send_alerts(out)
        await self._snapshot(touched)

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
            await self._send_alerts(events)
            await self._snapshot(changed)
            log.warning("rules version %s in force: checks of %d sensor(s) rebuilt, the others kept their state",
                        self.live_rules.version, len(changed))
            return True

    # -- lifecycle ------------------------------------------------------------------

    async def on_revoked(self, revoked: Iterable[TP]) -> None:
        """Snapshot and forget the sensors of revoked readings partitions."""
        async with self._lock:
            await self._on_revoked(revoked)

    async def _on_revoked(self, revoked: Iterable[TP]) -> None:
        revoked = list(revoked)
        gone = [tp for tp in revoked if tp in self.sensors_by_tp]
        sensors = [sid for tp in gone for sid in self.sensors_by_tp[tp]]
        await self._snapshot(sid for sid in sensors if self.engine.dirty(sid))
        await self.app.producer.flush()
        for tp in revoked:
            self.next_offset.pop(tp, None)
            forget_taken(self.app, tp)
        for tp in gone:
            self.engine.drop(self.sensors_by_tp.pop(tp))
            self.clocks.drop(tp)
        for sid in sensors:
            self.tp_of.pop(sid, None)
        if sensors:
            log.info("partitions revoked: snapshotted and released %d sensors", len(sensors))

    async def on_recovered(self) -> None:
        """Restore the sensors of our active readings partitions from their snapshots."""
        async with self._lock:
            await self._on_recovered()

    async def _on_recovered(self) -> None:
        actives = {tp for tp in self.app.assignor.assigned_actives() if tp.topic in self.topics.readings_names}
        restored: list[str] = []
        for _, snap in self.snapshots.items():
            tp = TP(str(snap.get("topic")), int(snap.get("partition", -1)))
            sid = snap.get("sensor_id")
            if tp not in actives or not isinstance(sid, str) or sid in self.engine:
                continue
            if self.engine.restore(snap):
                self._place(sid, tp)
                if snap.get("last_ts") is not None:
                    self.clocks.observe(tp, sid, float(snap["last_ts"]))
                restored.append(sid)
        log.info("table recovered: restored %d sensors' detector state on %d partitions", len(restored), len(actives))
        if self.kafka is not None and actives:
            await self._align_with_committed(restored, actives)

    async def _align_with_committed(self, restored: list[str], actives: set[TP]) -> None:
        """Make the restored state and the consumer positions meet at the committed offsets.

        * committed offset beyond a snapshot's position: re-read the gap into the
          engine (the events it produces were sent before the crash: dropped);
        * no committed offset at all: seek the stream to the oldest restored
          position + 1, else to the start (``auto_offset_reset=earliest``
          explicitly). Without a committed offset the consumer's
          seek-to-committed leaves the fetch position where a previous
          assignment's prefetch left it, past records that were fetched and
          then dropped by the rebalance, and those readings would be skipped.
        """
        starts: dict[tuple[str, int], int] = {}
        for sid in restored:
            st, tp = self.engine.state(sid), self.tp_of.get(sid)
            if st is not None and tp is not None and st.position is not None:
                key = (tp.topic, tp.partition)
                starts[key] = min(starts.get(key, st.position + 1), st.position + 1)
        committed = await committed_offsets(self.kafka, self.app.conf.id, [(tp.topic, tp.partition) for tp in actives])
        for tp in actives:
            key = (tp.topic, tp.partition)
            if key not in committed:
                await self.app.consumer.seek(tp, starts.get(key, 0))
            self.next_offset[tp] = committed.get(key, starts.get(key, 0))
        ranges = {key: (start, committed[key]) for key, start in starts.items() if committed.get(key, 0) > start}
        if not ranges:
            return

        def feed(rec: ConsumerRecord) -> None:
            tp = TP(rec.topic, rec.partition)
            for item in readings_of(rec.value, rec.key, rec.headers):
                if type(item) is RejectedReading:
                    continue  # dead-lettered when first read
                try:
                    self.engine.process(item, position=rec.offset)  # events were sent before the crash
                except ValidationError:
                    continue
                self._place(item.sensor_id, tp)
                self.clocks.observe(tp, item.sensor_id, item.ts)
                self.replayed += 1

        count = await read_ranges(self.kafka, ranges, feed, give_up_after_idle=3)
        await self._snapshot(sid for sid in list(self.tp_of) if self.engine.dirty(sid))
        log.info("replayed %d readings left out of snapshots on %d partitions", count, len(ranges))

    def _restore_one(self, sid: str, tp: TP) -> bool:
        snap = self.snapshots.get(sid)
        if snap is not None and snap.get("topic") == tp.topic and self.engine.restore(snap):
            self._place(sid, tp)
            return True
        return False

    async def on_shutdown(self) -> None:
        """Snapshot every sensor with unsaved readings (Faust flushes the producer next)."""
        async with self._lock:
            dirty = [sid for sid in self.tp_of if self.engine.dirty(sid)]
            await self._snapshot(dirty)
        log.info("shutdown: snapshotted %d sensors", len(dirty))

    # -- helpers ------------------------------------------------------------------

    def _place(self, sid: str, tp: TP) -> None:
        old = self.tp_of.get(sid)
        if old is not None:
            self.sensors_by_tp.get(old, set()).discard(sid)
        self.tp_of[sid] = tp
        self.sensors_by_tp.setdefault(tp, set()).add(sid)

    async def _snapshot(self, sensor_ids: Iterable[str]) -> None:
        for sid in sensor_ids:
            tp = self.tp_of.get(sid)
            if tp is not None and sid in self.engine:
                await self.snapshots.write(tp, sid, self.engine.snapshot(sid))
                metrics.SNAPSHOT_WRITES.inc()

    async def _send_alerts(self, events: list[AlertEvent]) -> None:
        """Send events and wait until the broker has them.

        Waiting matters: the snapshots written next may include the readings
        behind these events, and a reading included in a snapshot is never
        processed again, so its events must be stored before the snapshot.
        """
        pending = []
        for ev in events:
            pending.append(await self.topics.alerts.send(key=ev.alert_id.encode(), value=to_json(ev)))
            log.info("alert %s %s %s %s value=%s (%s)", ev.state, ev.severity, ev.sensor_id, ev.rule, ev.value,
                     ev.alert_id)
        if pending:
            await asyncio.gather(*pending)
        self.events_sent += len(events)
        metrics.count_alert_events(events)

    async def _dead_letter(self, raw: bytes | None, reason: str, topic: str, key: Any) -> None:
        sid = key.decode("utf-8", "replace")[:64] if isinstance(key, bytes) else None
        log.warning("dead-lettering a message from %s (key %r): %s", topic, sid, reason)
        await self.topics.deadletter.send(key=key if isinstance(key, bytes) else None,
                                          value=dead_letter(raw, reason, topic))
        self.dead_letters += 1
        metrics.DEAD_LETTERED.labels("processing_failed" if reason.startswith("processing failed") else "invalid").inc()


class _Batch:
    """What one processing batch collects: events to send, sensors to snapshot, readings done."""

    __slots__ = ("out", "touched", "done", "started")

    def __init__(self) -> None:
        self.out: list[AlertEvent] = []
        self.touched: set[str] = set()
        self.done: list[Any] = []
        self.started = time.time()


def _key_of(item: RejectedReading) -> bytes | None:
    return item.sensor_id.encode() if item.sensor_id else None


def attach_agents(app: faust.App, runtime: DetectorRuntime, *, batch_size: int, batch_within_s: float,
                  tick_interval_s: float, rules_check_s: float = 0.0) -> None:
    """Register the detector agent, the clock timer, the rules watch and the lifecycle hooks on ``app``."""

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

    @app.timer(interval=LAG_INTERVAL_S, name="cityeye-consumer-lag")
    async def consumer_lag() -> None:
        # the position from Faust's monitor, never a call into the consumer thread that may wait on a reset
        await report_lag(app.consumer, lag, set(runtime.topics.readings_names),
                         position=metrics.monitor_position(app))

    runtime.snapshots.table.on_recover(runtime.on_recovered)

    @app.on_partitions_revoked.connect
    async def _revoked(app: faust.App, revoked: set[TP], **kwargs: Any) -> None:
        await runtime.on_revoked(revoked)

    @app.on_before_shutdown.connect
    async def _shutdown(app: faust.App, **kwargs: Any) -> None:
        await runtime.on_shutdown()
