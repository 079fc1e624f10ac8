"""The worker's snapshot table recovers exactly from a changelog written in multi-record batches.

Tansu's ListOffsets(latest) counts batches, not records, so Faust's own
recovery would stop after the first batch's worth of offsets; the worker
takes the changelog's end offsets from Fetch high watermarks instead
(streams/transport.py), which lets its producer batch snapshots and alert
events (issue #10: one record per batch cost a broker round trip each).
"""

from __future__ import annotations

import pytest
from aiokafka.structs import TopicPartition

from cityeye.contracts import Reading
from cityeye.kafka import ensure_topics, fetched_end_offsets, make_producer
from streams.command import StreamsWorker
from tests.kafka_helpers import wait_until
from tests.test_streams_worker import T0, produce

pytestmark = pytest.mark.timeout(90)

SENSORS = 40


async def _write_batched(settings, topic: str, records: list[tuple[bytes, bytes]], partition: int) -> None:
    """``records`` to ``topic[partition]`` in as few produce batches as possible (a long linger)."""
    producer = make_producer(settings.kafka, "test-batched", linger_ms=500, max_batch_size=1 << 20)
    await producer.start()
    try:
        sent = [await producer.send(topic, value, key=key, partition=partition) for key, value in records]
        for fut in sent:
            await fut
    finally:
        await producer.stop()


def _gauge(i: int, step: int) -> Reading:
    sid, t = f"wl-batch-{i:02d}", T0 + 60.0 * step
    return Reading(sid, "water_level", "huangpu", t, {"level_m": 3.0 + 0.01 * step}, t,
                   f"cityeye/huangpu/water_level/{sid}")


async def test_fetched_end_offsets_count_records_of_a_multi_record_batch(settings):
    await ensure_topics(settings.kafka, {"batched": 2})
    await _write_batched(settings, "batched", [(f"k{i}".encode(), b"v") for i in range(25)], partition=1)
    ends = await fetched_end_offsets(settings.kafka, [TopicPartition("batched", 0), TopicPartition("batched", 1)])
    assert ends == {TopicPartition("batched", 0): 0, TopicPartition("batched", 1): 25}


async def test_table_recovers_every_snapshot_the_worker_wrote_in_batches(settings):
    sensors = [_gauge(i, 0).sensor_id for i in range(SENSORS)]
    # one aggregated record per partition: every gauge's first snapshot goes out in the same batch
    await produce(settings, [_gauge(i, step) for step in range(3) for i in range(SENSORS)], aggregate=500)
    async with StreamsWorker(settings) as first:
        runtime = first.streams.runtime
        assert await wait_until(lambda: runtime.readings >= 3 * SENSORS, timeout=30)
        # snapshots are built and sent in the background (streams/snapshot_writer.py): wait until every
        # gauge's is kept and as many were handed to the producer, bounded
        assert await wait_until(lambda: runtime.snapshots.writes >= SENSORS
                                and all(runtime.snapshots.get(sid) for sid in sensors), timeout=30)
    async with StreamsWorker(settings) as second:
        await second.wait_ready()
        missing = [sid for sid in sensors if second.streams.runtime.engine.state(sid) is None]
    assert missing == []  # every gauge's state came back from the changelog, before any new reading
