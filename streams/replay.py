"""Re-reading the readings a crash left out of the last snapshots.

After a crash the consumer group resumes at its committed offsets, but a
sensor's snapshot may be older: readings between the snapshot's position and
the committed offset were processed (and their alert events sent) yet are
in no snapshot. :func:`read_ranges` reads exactly those offset ranges with a
plain aiokafka consumer (no group), so the worker can feed them to the
engine again, discarding the events they produce, before its stream starts.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Awaitable, Callable, Iterable

from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.structs import ConsumerRecord, TopicPartition

from cityeye.config import KafkaSettings
from cityeye.consume import Batches, consume
from cityeye.kafka import make_consumer

__all__ = ["committed_offsets", "read_ranges"]

log = logging.getLogger(__name__)


async def committed_offsets(kafka: KafkaSettings, group_id: str, tps: Iterable[tuple[str, int]]) -> dict[tuple[str, int], int]:
    """The group's committed offset per partition (partitions without one are left out).

    Partitions are always named explicitly (some brokers drop the connection
    on an OffsetFetch for all partitions).
    """
    wanted = [TopicPartition(t, p) for t, p in tps]
    if not wanted:
        return {}
    admin = AIOKafkaAdminClient(bootstrap_servers=kafka.bootstrap, client_id=f"{kafka.client_id_prefix}-replay-admin")
    await admin.start()
    try:
        got = await admin.list_consumer_group_offsets(group_id, partitions=wanted)
    finally:
        await admin.close()
    return {(tp.topic, tp.partition): meta.offset for tp, meta in got.items() if meta is not None and meta.offset >= 0}


async def read_ranges(kafka: KafkaSettings, ranges: dict[tuple[str, int], tuple[int, int]],
                      handle: Callable[[ConsumerRecord], Awaitable[None] | None]) -> int:
    """Call ``handle(record)`` for every record in ``[start, end)`` of each partition; return the count.

    A partition whose range cannot be read completely (the records were
    deleted, the broker returned less) is given up with a warning once the
    consumer reaches the end of what the broker has.
    """
    todo = {TopicPartition(t, p): (s, e) for (t, p), (s, e) in ranges.items() if e > s}
    if not todo:
        return 0
    consumer = make_consumer(kafka, group=None)
    await consumer.start()
    count = 0
    idle = 0
    done = asyncio.Event()

    async def feed(batch: Batches) -> None:
        nonlocal count, idle
        idle = 0 if batch else idle + 1
        if idle >= 3:
            log.warning("replay: no more records for %s; giving up on these ranges",
                        ", ".join(f"{tp.topic}[{tp.partition}]" for tp in todo))
            done.set()
            return
        for tp, records in batch.items():
            if tp not in todo:  # read completely, paused
                continue
            end = todo[tp][1]
            for rec in records:
                if rec.offset >= end:
                    break
                result = handle(rec)
                if result is not None:
                    await result
                count += 1
            if records and records[-1].offset >= end - 1:
                todo.pop(tp, None)
                consumer.pause(tp)
        if not todo:
            done.set()

    try:
        consumer.assign(list(todo))
        for tp, (start, _) in todo.items():
            consumer.seek(tp, start)
        # paused partitions (ranges read completely) return nothing more
        await consume(consumer, feed, done, timeout_ms=1000, max_records=5000, partitions=list(todo), name="replay")
    finally:
        await consumer.stop()
    return count
