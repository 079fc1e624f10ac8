"""The state lifecycle of :class:`streams.agents.DetectorRuntime`: revocation, recovery, shutdown.

* when readings partitions are revoked, their sensors' unsaved state is
  snapshotted and in the broker before the rebalance goes on, then the
  sensors are forgotten;
* when the table has recovered, the sensors of the active readings
  partitions are restored from their snapshots, and the readings between a
  snapshot and the group's committed offset are re-read (streams.replay)
  with their events dropped; partitions without a committed offset are
  sought to the oldest restored position;
* at shutdown every sensor with unsaved readings is snapshotted and the
  snapshot writer and the alert producer stop.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Iterable

from aiokafka.structs import ConsumerRecord
from faust.types import TP

from cityeye.errors import ValidationError
from cityeye.kafka import read_ranges
from cityeye.reading_records import RejectedReading, readings_of
from streams.holes import forget_taken
from streams.replay import committed_offsets

if TYPE_CHECKING:
    from streams.agents import DetectorRuntime

__all__ = ["PartitionLifecycle"]

log = logging.getLogger(__name__)


class PartitionLifecycle:
    """Revocation, recovery and shutdown hooks of :class:`~streams.agents.DetectorRuntime` (a mixin)."""

    async def on_revoked(self: "DetectorRuntime", revoked: Iterable[TP]) -> None:
        """Snapshot and forget the sensors of revoked readings partitions."""
        async with self._lock:
            await self._on_revoked(revoked)

    async def _on_revoked(self: "DetectorRuntime", revoked: Iterable[TP]) -> None:
        revoked = list(revoked)
        gone = [tp for tp in revoked if tp in self.sensors_by_tp]
        sensors = [sid for tp in gone for sid in self.sensors_by_tp[tp]]
        await self._snapshot_now(sensors)  # the partitions' snapshots are in the broker before they go
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

    async def on_recovered(self: "DetectorRuntime") -> None:
        """Restore the sensors of our active readings partitions from their snapshots."""
        async with self._lock:
            await self._on_recovered()

    async def _on_recovered(self: "DetectorRuntime") -> None:
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

    async def _align_with_committed(self: "DetectorRuntime", restored: list[str], actives: set[TP]) -> None:
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
        self._snapshot_dirty(list(self.tp_of))
        log.info("replayed %d readings left out of snapshots on %d partitions", count, len(ranges))

    async def _snapshot_now(self: "DetectorRuntime", sensor_ids: Iterable[str]) -> list[str]:
        """Snapshot those of ``sensor_ids`` with unsaved readings and wait until the broker has every pending
        snapshot (the caller holds the lock); returns the sensors snapshotted."""
        dirty = self._snapshot_dirty(sensor_ids)
        await self.writer.write_now()
        return dirty

    def _restore_one(self: "DetectorRuntime", sid: str, tp: TP) -> bool:
        snap = self.snapshots.get(sid)
        if snap is not None and snap.get("topic") == tp.topic and self.engine.restore(snap):
            self._place(sid, tp)
            return True
        return False

    async def on_shutdown(self: "DetectorRuntime") -> None:
        """Snapshot every sensor with unsaved readings and wait for the broker; stop the writer and the alert producer.

        Runs once the consumer stopped (Faust flushes its producer next);
        clock ticks after it do nothing.
        """
        async with self._lock:
            dirty = await self._snapshot_now(list(self.tp_of))
            self.stopped = True
            await self.writer.close()
            await self.alerts.close()
        log.info("shutdown: snapshotted %d sensors", len(dirty))
