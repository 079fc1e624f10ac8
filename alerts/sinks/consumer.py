"""The at-least-once loop between ``alerts.events`` and a sink.

:class:`SinkConsumer` reads ``alerts.events`` in consumer group
``<prefix>-sink-<sink.name>`` (one group per sink, so each sink sees every
event), decodes each record with :func:`decode_alert_event`, feeds the sink,
and flushes it when :attr:`~alerts.sinks.base.BaseSink.due`. Offsets are
committed only after the flush succeeded, so a crash or restart re-reads
whatever was not written (InfluxDB points are idempotent by time + tags,
webhook deliveries by ``Idempotency-Key``):

* a record that does not decode to a valid event is written to
  ``alerts.deadletter`` (a :class:`SinkDeadLetter`) and skipped;
* items the sink refuses for good come back from ``flush`` and are
  dead-lettered the same way before the commit;
* a failed flush (:class:`SinkWriteError`) is retried with backoff until it
  succeeds or the stop event is set; nothing is committed meanwhile and no
  more records are read (backpressure);
* before partitions are revoked in a rebalance the buffer is flushed and
  committed, or dropped if that fails (the new owner re-reads it).
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from aiokafka import ConsumerRebalanceListener, TopicPartition
from aiokafka.errors import KafkaError

from alerts.notification import Backoff
from alerts.sinks.metrics import SINK_DEAD_LETTERED, SINK_FLUSH_FAILURES, SINK_WRITTEN
from alerts.sinks.base import BaseSink, Rejected, SinkWriteError
from alerts.sinks.deadletter import DeadLetterWriter, SinkDeadLetter
from cityeye.config import KafkaSettings
from cityeye.consume import Batches, consume
from cityeye.contracts import TOPIC_ALERTS, decode_alert_event, to_json
from cityeye.kafka import make_consumer

__all__ = ["SinkConsumer"]

log = logging.getLogger(__name__)

class _FlushOnRevoke(ConsumerRebalanceListener):
    def __init__(self, owner: "SinkConsumer") -> None:
        self.owner = owner

    async def on_partitions_revoked(self, revoked) -> None:
        await self.owner._on_revoked()

    async def on_partitions_assigned(self, assigned) -> None:
        log.info("sink %s assigned %s", self.owner.sink.name, sorted(f"{tp.topic}[{tp.partition}]" for tp in assigned))


class SinkConsumer:
    """Consumes ``topic`` into ``sink``; see the module docstring for the guarantees.

    ``SinkConsumer(kafka, sink, deadletters=DeadLetterWriter(producer),
    topic="alerts.events", group=None (-> "sink-<name>"), backoff=None)``.
    """

    def __init__(self, kafka: KafkaSettings, sink: BaseSink, *, deadletters: DeadLetterWriter,
                 topic: str = TOPIC_ALERTS, group: str | None = None, backoff: Backoff | None = None) -> None:
        self.kafka = kafka
        self.sink = sink
        self.deadletters = deadletters
        self.topic = topic
        self.group = group or f"sink-{sink.name}"
        self.backoff = backoff or Backoff(initial_s=0.5, max_s=30.0)
        self._pending: dict[TopicPartition, int] = {}
        self._lock = asyncio.Lock()
        self._consumer = None
        self._stop = asyncio.Event()
        #: counters for logs and tests
        self.stats = {"written": 0, "dead_lettered": 0, "commits": 0, "flush_failures": 0}

    async def run(self, stop: asyncio.Event) -> None:
        """Consume until ``stop`` is set; then flush once more and commit if that worked."""
        self._stop = stop
        self.sink.stop_event = stop
        consumer = make_consumer(self.kafka, group=self.group, max_poll_records=self.sink.batch_size)
        consumer.subscribe([self.topic], listener=_FlushOnRevoke(self))
        try:
            await self.sink.start()
            await consumer.start()
            self._consumer = consumer
            log.info("sink consumer started: %s, group %s", self.sink.describe(), self.group)
            # commits follow the flushes (_flush_and_commit), not each fetch: the handler returns None
            await consume(consumer, self._handle, stop, timeout_ms=self._fetch_timeout_ms, max_records=None,
                          name=f"sink {self.sink.name}")
        finally:
            try:
                if self._pending:
                    await self._flush_and_commit(retry=False)
            except (SinkWriteError, KafkaError) as exc:
                log.warning("sink %s stopped with %d unwritten items (%s); they will be read again",
                            self.sink.name, len(self.sink), exc)
            finally:
                await consumer.stop()
                await self.sink.close()
                self._consumer = None

    def _fetch_timeout_ms(self) -> int:
        """Wait for records at most 1 s, and no longer than until the buffer is due."""
        wait = min(1.0, self.sink.seconds_until_due()) if len(self.sink) else 1.0
        return max(1, int(wait * 1000))

    async def _handle(self, batches: Batches) -> None:
        """Buffer the fetched records; flush and commit when the sink is due (or nothing is buffered)."""
        if not await self._take(batches):
            return  # stopped while dead-lettering: the loop ends, run() flushes what it can
        if self._pending and (self.sink.due or not len(self.sink)):
            await self._flush_and_commit(retry=True)

    async def _take(self, batches: dict[TopicPartition, list[Any]]) -> bool:
        """Decode and buffer the records; False if stopped before all were handled."""
        for tp, records in batches.items():
            for record in records:
                try:
                    event = decode_alert_event(record.value)
                except ValueError as exc:
                    letter = SinkDeadLetter.of(self.sink.name, f"malformed alert event: {exc}", record.value or b"",
                                               topic=tp.topic, partition=tp.partition, offset=record.offset)
                    if not await self._dead_letter(letter):
                        return False
                else:
                    self.sink.add(event)
                self._pending[tp] = record.offset + 1
        return True

    async def _dead_letter(self, letter: SinkDeadLetter) -> bool:
        """Write ``letter``, retrying until Kafka takes it; False if stopped first."""
        attempt = 0
        while True:
            try:
                await self.deadletters.send(letter)
                self.stats["dead_lettered"] += 1
                SINK_DEAD_LETTERED.labels(self.sink.name).inc()
                log.warning("sink %s dead-lettered a record (%s)", self.sink.name, letter.reason[:200])
                return True
            except SinkWriteError as exc:
                attempt += 1
                log.error("sink %s: %s (attempt %d)", self.sink.name, exc, attempt)
                if await self._wait(self.backoff.delay(min(attempt, 30))):
                    return False

    async def _wait(self, seconds: float) -> bool:
        try:
            await asyncio.wait_for(self._stop.wait(), seconds)
        except asyncio.TimeoutError:
            return False
        return True

    async def _flush_and_commit(self, retry: bool) -> bool:
        async with self._lock:
            attempt = 0
            while True:
                count = len(self.sink)
                try:
                    rejected = await self.sink.flush()
                    break
                except SinkWriteError as exc:
                    attempt += 1
                    self.stats["flush_failures"] += 1
                    SINK_FLUSH_FAILURES.labels(self.sink.name).inc()
                    if not retry:
                        raise
                    if self._stop.is_set():
                        return False  # stopping: run() tries once more, else the items are read again
                    delay = self.backoff.delay(min(attempt, 30))
                    log.warning("sink %s: flush of %d items failed (%s); retry %d in %.1f s",
                                self.sink.name, count, exc, attempt, delay)
                    if await self._wait(delay):
                        return False
            for item in rejected:
                if not await self._dead_letter(self._rejected_letter(item)):
                    return False
            self.stats["written"] += count - len(rejected)
            SINK_WRITTEN.labels(self.sink.name).inc(count - len(rejected))
            await self._commit()
            return True

    def _rejected_letter(self, rejected: Rejected) -> SinkDeadLetter:
        item = rejected.item
        raw = to_json(item) if hasattr(item, "__dataclass_fields__") else str(item).encode()
        return SinkDeadLetter.of(self.sink.name, rejected.reason, raw, topic=self.topic,
                                 event_id=getattr(item, "event_id", None), status=rejected.status)

    async def _commit(self) -> None:
        offsets, self._pending = dict(self._pending), {}
        if not offsets or self._consumer is None:
            return
        try:
            await self._consumer.commit(offsets)
            self.stats["commits"] += 1
        except KafkaError as exc:
            # written but not committed (e.g. a rebalance): redelivery is harmless
            log.warning("sink %s: commit failed (%s); those records may be processed again", self.sink.name, exc)

    async def _on_revoked(self) -> None:
        if not self._pending:
            return
        try:
            await self._flush_and_commit(retry=False)
        except (SinkWriteError, KafkaError) as exc:
            log.warning("sink %s: could not flush before a rebalance (%s); dropping %d buffered items to be re-read",
                        self.sink.name, exc, len(self.sink))
            self.sink.discard()
            self._pending.clear()
