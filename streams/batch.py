"""Processing batches of reading records: the detector agent's side of :class:`streams.agents.DetectorRuntime`.

A batch runs the engine on each record's readings in offset order, reads
directly the records a partition's stream skipped (streams/holes.py), sends
the alert events it produced and waits for the broker to have them, then
marks the sensors whose state must be saved for the snapshot writer
(streams/snapshot_writer.py) with the first offset the batch processed on
their partition: the group commits no further until those snapshots are
written. Readings that cannot be processed go to ``readings.deadletter``.
"""

from __future__ import annotations

import logging
import time
from typing import TYPE_CHECKING, Any, Iterable

from aiokafka.structs import ConsumerRecord
from faust.types import TP, EventT

from cityeye.contracts import AlertEvent
from cityeye.errors import ValidationError
from cityeye.intake_progress import IntakeProgress, is_intake_progress
from cityeye.kafka import read_ranges
from cityeye.reading_records import RejectedReading, encode_reading, readings_of
from streams import metrics
from streams.grouping import by_sensor
from streams.holes import dropped_range
from streams.models import dead_letter

if TYPE_CHECKING:
    from streams.agents import DetectorRuntime

__all__ = ["Batch", "BatchProcessing"]

log = logging.getLogger(__name__)


class Batch:
    """What one processing batch collects: events to send, sensors to snapshot, readings done (their tally).

    ``first`` holds, per readings partition, the first offset the batch
    processed there: the barrier of the snapshots it makes necessary.
    """

    __slots__ = ("out", "touched", "done", "started", "first")

    def __init__(self) -> None:
        self.out: list[AlertEvent] = []
        self.touched: set[str] = set()
        self.done = metrics.ReadingsTally()
        self.started = time.time()
        self.first: dict[TP, int] = {}


class BatchProcessing:
    """The batch side of :class:`~streams.agents.DetectorRuntime` (a mixin: the state is the runtime's)."""

    async def process_events(self: "DetectorRuntime", events: Iterable[EventT]) -> None:
        """Run the engine on a batch of reading events and send what it emits."""
        async with self._lock:
            await self._process_events(events)

    async def _process_events(self: "DetectorRuntime", events: Iterable[EventT]) -> None:
        batch = Batch()
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
        await self._send_then_snapshot(batch.out, batch.touched, batch.first)
        batch.done.observe(batch.started)

    async def _process_record(self: "DetectorRuntime", tp: TP, offset: int, key: bytes | None, value: bytes | None,
                              headers: Any, batch: Batch) -> None:
        """Run the engine on the readings of one record; collect what it emits in ``batch``.

        Each sensor's readings run one after the other (streams/grouping.py: its
        state stays in the CPU's caches); the stream clocks take them in the
        record's order.
        """
        engine, seen_at = self.engine, time.monotonic()
        if headers and is_intake_progress(headers):
            self._intake_progress(tp, value, headers, seen_at)
            return
        batch.first.setdefault(tp, offset)
        # bound once a record: the loops below run for every reading
        tp_of, due, every = self.tp_of, engine.due, self.snapshot_every
        touched = batch.touched
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
            if tp_of.get(sid) != tp:
                self._place(sid, tp)
            if emitted:
                batch.out.extend(emitted)
                touched.add(sid)
            elif new or due(sid, every):  # a first snapshot bounds any replay
                touched.add(sid)
        processed = [item for item in items if id(item) not in refused] if refused else items
        self.clocks.observe_readings(tp, processed, seen_at)
        batch.done.add(processed)

    def _intake_progress(self: "DetectorRuntime", tp: TP, value: bytes | None, headers: Any, seen_at: float) -> None:
        """A gateway's intake progress (cityeye/intake_progress.py): ``tp``'s sensors age no further than
        its ``until`` (its wall clock, taken as this host's) until it tells more; a malformed one is ignored."""
        progress = IntakeProgress.from_record(value, headers)
        if progress is not None:
            self.clocks.intake(tp, progress.gateway, progress.until - time.time() + seen_at, seen_at)

    async def _process_skipped(self: "DetectorRuntime", tp: TP, start: int, end: int, batch: Batch) -> None:
        for rec in await self._read_skipped(tp, start, end):
            await self._process_record(tp, rec.offset, rec.key, rec.value, rec.headers, batch)
        self.next_offset[tp] = max(self.next_offset.get(tp, end), end)

    async def _fill_stalled(self: "DetectorRuntime") -> None:
        """Read directly what a partition's stream dropped and has not delivered for a whole clock interval.

        A hole at the end of what was produced shows no later record; a
        partition whose next offset did not move since the last tick gets
        the records Faust handed to its stream and the stream dropped read
        directly (streams/holes.py: a backlog still on its way is left to
        the stream; the stream's copies, if they come, are skipped).
        """
        batch, stalled = Batch(), self._last_seen_offset
        self._last_seen_offset = dict(self.next_offset)
        for tp, expected in list(self.next_offset.items()):
            if stalled.get(tp) != expected:
                continue
            hole = dropped_range(self.app, tp, expected, self.app.consumer.highwater(tp))
            if hole is not None:
                await self._process_skipped(tp, *hole, batch)
        await self._send_then_snapshot(batch.out, batch.touched, batch.first)

    async def _read_skipped(self: "DetectorRuntime", tp: TP, start: int, end: int) -> list[ConsumerRecord]:
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

    async def _dead_letter(self: "DetectorRuntime", raw: bytes | None, reason: str, topic: str, key: Any) -> None:
        sid = key.decode("utf-8", "replace")[:64] if isinstance(key, bytes) else None
        log.warning("dead-lettering a message from %s (key %r): %s", topic, sid, reason)
        await self.topics.deadletter.send(key=key if isinstance(key, bytes) else None,
                                          value=dead_letter(raw, reason, topic))
        self.dead_letters += 1
        metrics.DEAD_LETTERED.labels("processing_failed" if reason.startswith("processing failed") else "invalid").inc()


def _key_of(item: RejectedReading) -> bytes | None:
    return item.sensor_id.encode() if item.sensor_id else None
