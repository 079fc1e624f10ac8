"""bench/latency_stages.py: the latency bench's gateway stages from the readings read back after the run."""

from __future__ import annotations

import asyncio
import time
from types import SimpleNamespace

import pytest
from aiokafka.structs import TopicPartition

from bench.latency_stages import (StageTimes, end_offsets_of, first_reading, nearest_rank, partitions_of,
                                  ranges_between, read_readings_back)
from cityeye.contracts import Reading, readings_topic
from cityeye.intake_progress import IntakeProgress
from cityeye.kafka import make_producer
from cityeye.reading_records import AGGREGATE_HEADERS, encode_aggregate, encode_reading

TOPIC = readings_topic("water_level")


def _reading(sid: str, ts: float, received_at: float) -> Reading:
    return Reading(sensor_id=sid, kind="water_level", district="d00", ts=ts, values={"level_m": 3.0},
                   received_at=received_at, mqtt_topic=f"city/d00/water_level/{sid}")


def _record(value: bytes, timestamp_s: float, headers=()) -> SimpleNamespace:
    return SimpleNamespace(value=value, key=None, headers=list(headers), timestamp=int(timestamp_s * 1000))


def test_a_record_gives_each_readings_gateway_and_kafka_stage_after_the_start():
    stages = StageTimes(stale_after=5.0)
    stages.started = 100.0
    late = encode_aggregate([encode_reading(_reading("a", 99.0, 99.5)), encode_reading(_reading("b", 101.0, 101.004)),
                             encode_reading(_reading("a", 102.0, 102.010))])
    stages.on_reading_record(_record(late, 102.050, AGGREGATE_HEADERS))
    assert stages.times["gateway"] == pytest.approx([0.004, 0.010], abs=1e-6)
    assert stages.times["kafka"] == pytest.approx([1.050, 0.050], abs=1e-6)
    # every reading counts for the stale check, also those before the start
    assert stages.published_ts == {"a": [99.0, 102.0], "b": [101.0]}


def test_intake_progress_and_rejected_items_give_no_stage():
    stages = StageTimes(stale_after=5.0)
    stages.started = 0.0
    progress = IntakeProgress("gw", 10.0)
    stages.on_reading_record(_record(progress.to_json(), 10.0, IntakeProgress.HEADERS))
    stages.on_reading_record(_record(b"not json", 10.0))
    assert stages.times["gateway"] == stages.times["kafka"] == [] and stages.published_ts == {}


def test_a_stale_firing_is_true_in_the_data_only_where_the_gauge_sent_nothing_for_the_limit():
    stages = StageTimes(stale_after=5.0)
    stages.published_ts = {"a": [10.0, 12.0], "b": [10.0]}
    stages.stale = [("a", 16.0), ("b", 16.0)]  # a published at 12.0, within 5 s before 16.0: a false firing
    assert stages.stale_in_the_data() == 1


def test_ranges_are_what_was_written_between_the_readings_of_the_end_offsets():
    a, b, c = TopicPartition("t", 0), TopicPartition("t", 1), TopicPartition("t", 2)
    assert ranges_between({a: 2, b: 7}, {a: 5, b: 7, c: 3}) == {("t", 0): (2, 5), ("t", 2): (0, 3)}


def test_nearest_rank_is_the_value_at_the_rank_rounded_up():
    xs = [float(i) for i in range(1, 101)]
    assert (nearest_rank(xs, 50), nearest_rank(xs, 99), nearest_rank(xs[:10], 99)) == (50.0, 99.0, 10.0)


async def _send(kafka, records: list[tuple[bytes, tuple]]) -> None:
    producer = make_producer(kafka, "test", linger_ms=0)
    await producer.start()
    try:
        for value, headers in records:
            await producer.send_and_wait(TOPIC, value, key=b"wl-1", headers=list(headers))
    finally:
        await producer.stop()


def test_the_readings_written_after_the_noted_offsets_are_read_back_once(kafka):
    settings = kafka.settings

    async def scenario():
        now = time.time()
        await _send(settings, [(encode_reading(_reading("wl-1", now - 60, now - 60)), ())])  # before the run
        before = await end_offsets_of(settings, TOPIC)
        assert sum(before.values()) == 1 and set(before) == set(partitions_of(TOPIC))
        waiting = asyncio.create_task(first_reading(settings, TOPIC, before))
        # a gateway's intake progress is no reading: the stall's start waits for the first reading
        await _send(settings, [(IntakeProgress("gw", now).to_json(), IntakeProgress.HEADERS)])
        await asyncio.sleep(1.0)
        assert not waiting.done()
        sent_at = time.time()
        await _send(settings, [(encode_reading(_reading("wl-1", now + i, now + i + 0.002)), ()) for i in range(3)])
        seen = await asyncio.wait_for(waiting, 15)
        stages = StageTimes(stale_after=5.0)
        stages.started = now - 1
        count = await read_readings_back(settings, TOPIC, before, stages, timeout=30)
        return now, seen, sent_at, count, stages

    now, seen, sent_at, count, stages = asyncio.run(scenario())
    assert seen >= sent_at
    assert count == 4  # the progress record and the 3 readings; not the reading before the noted offsets
    assert stages.published_ts == {"wl-1": [now, now + 1, now + 2]}
    assert stages.times["gateway"] == pytest.approx([0.002] * 3, abs=1e-6)
