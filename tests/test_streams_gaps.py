"""The detector worker when its stream skips records: the skipped ones are read directly.

Around a rebalance Faust may drop the first records of a partition (it clears
its stream buffers when flow resumes after its read position moved past
them); readings lost that way changed the course of an ongoing episode
after a kill -9. Here the stream "skips" by handing the worker a record
beyond the next one it expects, as the runtime's ``process_events`` gets it.
"""

from __future__ import annotations

from types import SimpleNamespace

import pytest
from aiokafka.structs import TopicPartition
from faust.types import TP

from cityeye.contracts import readings_topic
from cityeye.kafka import make_consumer
from streams.command import StreamsWorker
from tests.kafka_helpers import wait_until
from tests.test_streams_worker import WL, alerts, expected_events, produce, summary, water_series

pytestmark = pytest.mark.timeout(90)


async def _records(settings, tp: TP, start: int, end: int) -> list:
    consumer = make_consumer(settings.kafka, group=None)
    await consumer.start()
    try:
        part = TopicPartition(tp.topic, tp.partition)
        consumer.assign([part])
        consumer.seek(part, start)
        got: list = []
        while len(got) < end - start:
            for records in (await consumer.getmany(part, timeout_ms=500)).values():
                got += [r for r in records if r.offset < end]
        return got
    finally:
        await consumer.stop()

#: yellow, then orange once 5.2 m is met for 2 min: at the third 5.3 m reading
FIRST = water_series([4.0] * 3 + [4.6] * 4)
SECOND = water_series([5.3] * 3, start=len(FIRST))
WANT = [e for e in expected_events(FIRST + SECOND) if e.rule == "water_level.warning"]


async def _worker_past_first(worker: StreamsWorker, settings) -> TP:
    """Feed FIRST to the worker and wait until it processed all of it; the water level's partition."""
    runtime = worker.streams.runtime
    await produce(settings, FIRST)
    await alerts(settings, lambda evs: len(evs) >= 1)
    assert await wait_until(lambda: runtime.readings >= len(FIRST))
    return runtime.tp_of[WL]


async def test_records_the_stream_skipped_are_read_and_processed(settings):
    first, second, want = FIRST, SECOND, WANT
    assert [(e.state, e.severity) for e in want] == [("firing", "yellow"), ("firing", "orange")]

    async with StreamsWorker(settings) as worker:
        runtime = worker.streams.runtime
        tp = await _worker_past_first(worker, settings)
        assert tp.topic == readings_topic("water_level") and runtime.next_offset[tp] == len(first)
        async with runtime._lock:  # the agent waits: it gets these records only after the skip below
            await produce(settings, second)
            last = (await _records(settings, tp, len(first) + 2, len(first) + 3))[0]
            event = SimpleNamespace(message=SimpleNamespace(tp=tp, offset=last.offset, key=last.key,
                                                            value=last.value, headers=last.headers))
            await runtime._process_events([event])  # the stream skipped the first two 5.3 m readings
        assert runtime.refilled == 2
        got = await alerts(settings, lambda evs: any(e.severity == "orange" for e in evs))
    warning = [e for e in got if e.rule == "water_level.warning"]
    assert summary(warning) == summary(want)


def _handed(worker: StreamsWorker, tp: TP) -> int:
    """The offset of the last record Faust's consumer handed to the stream (-1: none)."""
    handed = worker.app.consumer._read_offset.get(tp)
    return -1 if handed is None else handed


async def test_a_partition_left_behind_its_high_watermark_is_read_on_the_clock(settings):
    """A hole at the end of what was produced (no later record reveals it) is read on the clock tick."""
    first, second, want = FIRST, SECOND, WANT

    async with StreamsWorker(settings) as worker:
        runtime = worker.streams.runtime
        tp = await _worker_past_first(worker, settings)
        async with runtime._lock:  # the stream holds the new records back until the lock is free
            await produce(settings, second)
            assert await wait_until(lambda: _handed(worker, tp) >= len(first + second) - 1)
            assert await wait_until(lambda: worker.app.monitor.tp_read_offsets.get(tp, -1) >= len(first))
            # as if the stream had dropped them: Faust does not track the messages it drops
            worker.app.monitor.tp_read_offsets[tp] = len(first) - 1
            await runtime._fill_stalled()  # the first tick sees the partition behind ...
            assert runtime.refilled == 0
            await runtime._fill_stalled()  # ... the next one, still there: reads the hole
        assert runtime.refilled == len(second) and runtime.next_offset[tp] == len(first + second)
        got = await alerts(settings, lambda evs: any(e.severity == "orange" for e in evs))
        assert await wait_until(lambda: runtime.readings >= len(first + second))
    warning = [e for e in got if e.rule == "water_level.warning"]
    assert summary(warning) == summary(want)  # the stream's own copies, delivered later, were skipped


async def test_a_backlog_on_its_way_to_the_stream_is_not_read_directly(settings):
    """Records Faust handed to the stream and not yet processed (a backlog) are no hole: never read directly."""
    first, second, want = FIRST, SECOND, WANT

    async with StreamsWorker(settings) as worker:
        runtime = worker.streams.runtime
        tp = await _worker_past_first(worker, settings)
        async with runtime._lock:  # the stream's batch waits for the lock: a backlog behind the runtime
            await produce(settings, second)
            assert await wait_until(lambda: (worker.app.consumer.highwater(tp) or 0) >= len(first + second))
            assert await wait_until(lambda: _handed(worker, tp) >= len(first + second) - 1)
            for _ in range(3):  # a partition stalled for several whole ticks
                await runtime._fill_stalled()
            assert runtime.refilled == 0 and runtime.next_offset[tp] == len(first)
        got = await alerts(settings, lambda evs: any(e.severity == "orange" for e in evs))
        assert await wait_until(lambda: runtime.readings >= len(first + second))
        assert runtime.refilled == 0  # the stream delivered them itself
    warning = [e for e in got if e.rule == "water_level.warning"]
    assert summary(warning) == summary(want)
