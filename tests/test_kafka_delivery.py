"""The gateway's Kafka bookkeeping (ingest/kafka_delivery.py): partition counts learnt once, delivery retried."""

from __future__ import annotations

import asyncio

from aiokafka.errors import KafkaTimeoutError, MessageSizeTooLargeError

from cityeye.contracts import TOPIC_DEADLETTER, DeadLetter, Reading
from ingest.aggregation import OutRecord
from ingest.kafka_delivery import TRUNCATED_PAYLOAD, PartitionCounts, deliver, partition_count


class _Metadata:
    """A producer whose metadata fails ``failures`` times per topic, then has ``count`` partitions
    (``hang``: never answers for that topic)."""

    def __init__(self, count: int = 4, failures: int = 0, hang: str | None = None) -> None:
        self.count, self.failures, self.hang = count, failures, hang
        self.asked: list[str] = []

    async def partitions_for(self, topic: str) -> set[int]:
        self.asked.append(topic)
        if topic == self.hang:
            await asyncio.Event().wait()
        if self.asked.count(topic) <= self.failures:
            raise KafkaTimeoutError()
        return set(range(self.count))


async def test_the_intake_retries_until_the_metadata_has_the_topic_and_asks_once():
    producer, counts = _Metadata(count=3, failures=2), PartitionCounts()
    await counts.learn(producer, ["readings.a"], retry_s=0.01)
    assert counts == {"readings.a": 3} and producer.asked == ["readings.a"] * 3
    await counts.learn(producer, ["readings.a", "readings.a"], retry_s=0.01)
    assert producer.asked == ["readings.a"] * 3, "a known topic was looked up again"


async def test_at_start_a_topic_kafka_does_not_answer_for_is_left_for_later():
    producer, counts = _Metadata(count=2, hang="readings.slow"), PartitionCounts()
    await asyncio.wait_for(counts.learn(producer, {"readings.slow", "readings.b"}, timeout=0.05), 2)
    assert counts == {"readings.b": 2}
    assert await partition_count(_Metadata(failures=1), "readings.c", timeout=1) is None
    assert await partition_count(_Metadata(count=0), "readings.c") is None


def _reading(i: int) -> Reading:
    return Reading(f"wl-{i}", "water_level", "huangpu", 100.0 + i, {"level_m": 1.0 + i}, 100.0 + i,
                   f"city/huangpu/water_level/wl-{i}")


async def test_delivery_retries_failures_and_splits_or_shortens_what_is_too_large():
    sent: list[OutRecord] = []
    outcomes = iter([KafkaTimeoutError(), MessageSizeTooLargeError(), None, MessageSizeTooLargeError(), None])

    async def send(record: OutRecord) -> asyncio.Future:
        sent.append(record)
        future = asyncio.get_running_loop().create_future()
        error = next(outcomes)
        future.set_exception(error) if error else future.set_result(None)
        return future

    retries = []
    readings = [_reading(0), _reading(1)]
    aggregate = OutRecord.aggregate("readings.water_level", 1, readings, [OutRecord.single(r).value for r in readings])
    await asyncio.wait_for(deliver(aggregate, send, lambda r, exc, delay: retries.append(type(exc))), 5)
    assert retries == [KafkaTimeoutError]
    # resent once, then too large: split; the first half goes, the second (one reading) is too large too
    assert [len(r.outcomes) for r in sent] == [2, 2, 1, 1, 1]
    assert sent[2].outcomes == [readings[0]]
    last = sent[4]
    assert last.topic == TOPIC_DEADLETTER and isinstance(last.outcomes[0], DeadLetter)
    assert last.outcomes[0].reason.startswith("too_large:") and last.outcomes[0].sensor_id == "wl-1"
    assert len(last.outcomes[0].payload.encode()) <= TRUNCATED_PAYLOAD
