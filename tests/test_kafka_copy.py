"""cityeye.kafka's end offsets, group lags and topic copy, on two real Tansu brokers."""

from __future__ import annotations

import asyncio
import json

import pytest
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.structs import TopicPartition

from cityeye.config import KafkaSettings, Settings
from cityeye.kafka import CopyPlan, copy_topic, end_offsets, ensure_topics, group_lags, LagReader, make_consumer, \
    make_producer, read_ranges, read_topic
from launch.broker_rollover import carried_topics
from streams.tables import clear_snapshot_position
from launch.servers import TansuServer

TOPIC = "state.test"


@pytest.fixture
def target(tmp_path):
    server = TansuServer(workdir=tmp_path / "tansu-target")
    server.start()
    server.settings = KafkaSettings(bootstrap=server.bootstrap, profile="tansu")
    yield server
    server.cleanup()


async def _produce(kafka: KafkaSettings, records: list[tuple[int, bytes, bytes | None]], **overrides) -> None:
    producer = make_producer(kafka, "test", **overrides)
    await producer.start()
    try:
        sent = [await producer.send(TOPIC, value, key=key, partition=p, headers=[("h", key)]) for p, key, value in records]
        await asyncio.gather(*sent)
    finally:
        await producer.stop()


#: partition, key, value: k1 written three times in partition 0, k2 deleted by a tombstone, k3 in partition 1
RECORDS = [(0, b"k1", b"v1"), (0, b"k2", b"a"), (1, b"k3", b"x"), (0, b"k1", b"v2"), (0, b"k2", None),
           (1, b"k3", b"y"), (0, b"k1", b"v3"), (1, b"k4", b"z")]


async def _delete_topic(kafka: KafkaSettings) -> None:
    admin = AIOKafkaAdminClient(bootstrap_servers=kafka.bootstrap)
    await admin.start()
    try:
        await admin.delete_topics([TOPIC])
    finally:
        await admin.close()


def _rows(by_partition):
    return {p: [(r.key, r.value) for r in records] for p, records in by_partition.items()}


def test_end_offsets_count_every_record_of_multi_record_batches(kafka):
    """One batch of many records: the Fetch high watermark counts records (Tansu's ListOffsets would not)."""
    async def main():
        await ensure_topics(kafka.settings, {TOPIC: 2})
        await _produce(kafka.settings, RECORDS, linger_ms=200)  # lingering: several records per batch
        consumer = make_consumer(kafka.settings, group=None)
        await consumer.start()
        try:
            return await end_offsets(consumer, [TopicPartition(TOPIC, 0), TopicPartition(TOPIC, 1)])
        finally:
            await consumer.stop()

    ends = asyncio.run(main())
    assert ends == {TopicPartition(TOPIC, 0): 5, TopicPartition(TOPIC, 1): 3}


def test_read_ranges_reads_exactly_the_ranges_given(kafka):
    async def main():
        await ensure_topics(kafka.settings, {TOPIC: 2})
        await _produce(kafka.settings, RECORDS, linger_ms=200)
        got = []
        count = await read_ranges(kafka.settings, {(TOPIC, 0): (1, 4), (TOPIC, 1): (2, 3)}, got.append)
        return count, sorted((r.partition, r.offset, r.key, r.value) for r in got)

    count, got = asyncio.run(main())
    assert got == [(0, 1, b"k2", b"a"), (0, 2, b"k1", b"v2"), (0, 3, b"k2", None), (1, 2, b"k4", b"z")]
    assert count == 4


def test_a_range_beyond_the_end_is_given_up_after_idle_fetches_or_raised_on_a_timeout(kafka, caplog):
    """The two ways a range the broker cannot complete ends, as each caller chooses (offsets 5..8 do not exist)."""
    async def main():
        await ensure_topics(kafka.settings, {TOPIC: 2})
        await _produce(kafka.settings, RECORDS, linger_ms=200)
        given_up = []
        count = await read_ranges(kafka.settings, {(TOPIC, 0): (3, 9)}, given_up.append, give_up_after_idle=2)
        raised = []
        with pytest.raises(TimeoutError, match=r"state.test\[0\] up to 9"):
            await read_ranges(kafka.settings, {(TOPIC, 0): (3, 9)}, raised.append, give_up_after_idle=None,
                              timeout=3.0)
        return count, [r.offset for r in given_up], [r.offset for r in raised]

    count, given_up, raised = asyncio.run(main())
    assert (count, given_up) == (2, [3, 4])  # what the broker has of the range, then given up
    assert raised == [3, 4]
    assert "giving up on these ranges" in caplog.text and "state.test[0] up to 9" in caplog.text


def test_copy_latest_all_and_tail_keep_partitions_keys_and_headers(kafka, target):
    async def main():
        await ensure_topics(kafka.settings, {TOPIC: 2})
        await _produce(kafka.settings, RECORDS, linger_ms=200)
        copied = {}
        for mode, tail in (("latest", 0), ("all", 0), ("tail", 2)):
            count = await copy_topic(kafka.settings, target.settings, CopyPlan(TOPIC, mode, tail=tail),
                                     max_batch_size=1)
            copied[mode] = (count, _rows(await read_topic(target.settings, TOPIC)))
            await _delete_topic(target.settings)  # each mode copies into an empty topic
        return copied

    copied = asyncio.run(main())
    count, rows = copied["latest"]
    # latest per key, in the order of the latest writes; the tombstoned key is gone
    assert rows == {0: [(b"k1", b"v3")], 1: [(b"k3", b"y"), (b"k4", b"z")]}
    assert count == 3
    count, rows = copied["all"]
    assert count == len(RECORDS)
    assert rows == {0: [(k, v) for p, k, v in RECORDS if p == 0], 1: [(k, v) for p, k, v in RECORDS if p == 1]}
    count, rows = copied["tail"]
    assert rows == {0: [(b"k2", None), (b"k1", b"v3")], 1: [(b"k3", b"y"), (b"k4", b"z")]}


def test_copy_keeps_headers_and_timestamps_and_applies_the_transform(kafka, target):
    async def main():
        await ensure_topics(kafka.settings, {TOPIC: 1})
        snap = json.dumps({"sensor_id": "s1", "position": 41234, "last_ts": 5.0}).encode()
        await _produce(kafka.settings, [(0, b"s1", snap), (0, b"s2", b"not json")])
        src = await read_topic(kafka.settings, TOPIC)
        await copy_topic(kafka.settings, target.settings, CopyPlan(TOPIC, "latest", transform=clear_snapshot_position))
        return src, await read_topic(target.settings, TOPIC)

    src, dst = asyncio.run(main())
    assert [r.headers for r in dst[0]] == [r.headers for r in src[0]] == [(("h", b"s1"),), (("h", b"s2"),)]
    assert [r.timestamp for r in dst[0]] == [r.timestamp for r in src[0]]
    assert json.loads(dst[0][0].value) == {"sensor_id": "s1", "position": None, "last_ts": 5.0}
    assert dst[0][1].value == b"not json"


def test_group_lags_follow_commits(kafka):
    async def main():
        await ensure_topics(kafka.settings, {TOPIC: 2})
        await _produce(kafka.settings, RECORDS, linger_ms=200)
        consumer = make_consumer(kafka.settings, group="lagtest")
        await consumer.start()
        consumer.assign([TopicPartition(TOPIC, 0), TopicPartition(TOPIC, 1)])
        try:
            await consumer.commit({TopicPartition(TOPIC, 0): 2, TopicPartition(TOPIC, 1): 3})
            before = await group_lags(kafka.settings, [TOPIC])
            await consumer.commit({TopicPartition(TOPIC, 0): 5})
            after = await group_lags(kafka.settings, [TOPIC])
            async with LagReader(kafka.settings) as reader:  # one reader, read again: fresh ends and commits
                first = await reader.lags([TOPIC])
                await _produce(kafka.settings, [(1, b"k5", b"w"), (1, b"k6", b"w")])
                second = await reader.lags([TOPIC])
                await consumer.commit({TopicPartition(TOPIC, 1): 5})
                third = await reader.lags()
                # a group that never committed: all unread, when its partitions are named
                strict = await reader.lags([TOPIC], groups=[group, f"{group}-never"], uncommitted_as_lag=True)
        finally:
            await consumer.stop()
        return before, after, first, second, third, strict

    group = f"{kafka.settings.consumer_group_prefix}-lagtest"
    before, after, first, second, third, strict = asyncio.run(main())
    assert before[group] == {TopicPartition(TOPIC, 0): 3, TopicPartition(TOPIC, 1): 0}
    assert after[group] == first[group] == {TopicPartition(TOPIC, 0): 0, TopicPartition(TOPIC, 1): 0}
    assert second[group] == {TopicPartition(TOPIC, 0): 0, TopicPartition(TOPIC, 1): 2}
    assert third[group] == {TopicPartition(TOPIC, 0): 0, TopicPartition(TOPIC, 1): 0}
    assert strict == {group: {TopicPartition(TOPIC, 0): 0, TopicPartition(TOPIC, 1): 0},
                      f"{group}-never": {TopicPartition(TOPIC, 0): 5, TopicPartition(TOPIC, 1): 5}}


def test_the_carried_topics_are_the_state_topics():
    settings = Settings(kafka=KafkaSettings(consumer_group_prefix="cx"))
    plans = {p.topic: p for p in carried_topics(settings, dead_letter_tail=500)}
    changelog = "cx-streams-sensor-snapshots-changelog"
    assert plans[changelog].mode == "latest" and plans[changelog].transform is clear_snapshot_position
    assert plans["devices.health"].mode == "latest"
    assert {t: (p.mode, p.tail) for t, p in plans.items() if "deadletter" in t} == {
        "readings.deadletter": ("tail", 500), "alerts.deadletter": ("tail", 500),
        "notifications.deadletter": ("tail", 500)}
    assert not any(t.startswith("readings.") and "deadletter" not in t for t in plans)
    assert "alerts.events" not in plans and "alerts.grouped" not in plans
