"""Kafka helpers shared by every stage: topic creation, client factories, end offsets, lag, topic copy.

Only the plain Kafka protocol is used (aiokafka); broker-specific tuning
comes from :class:`cityeye.config.KafkaSettings`.

* :func:`end_offsets` -- each partition's end offset as a Fetch answers it
  (its high watermark), not ListOffsets: exact on every broker, including
  those that count batches rather than records there (Tansu);
  :func:`fetched_end_offsets` the same with a consumer of its own;
* :func:`group_lags` -- every consumer group's lag on the partitions it has
  committed offsets for (ListGroups, OffsetFetch, Fetch);
* :func:`copy_topic` -- copy a topic to another cluster: every record, the
  last N of each partition, or the latest value per key (a compaction by
  hand), partitions, keys, headers and timestamps kept, values optionally
  transformed on the way.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass, field
from typing import Callable, Literal

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import KafkaConnectionError, TopicAlreadyExistsError
from aiokafka.structs import ConsumerRecord, TopicPartition

from cityeye.config import KafkaSettings
from cityeye.contracts import all_topics

__all__ = ["ensure_topics", "make_producer", "make_consumer", "end_offsets", "fetched_end_offsets", "group_lags",
           "CopyPlan", "copy_topic", "read_topic"]

log = logging.getLogger(__name__)


async def ensure_topics(kafka: KafkaSettings, topics: dict[str, int] | None = None, timeout: float = 30.0) -> None:
    """Create ``topics`` (name -> partitions; default: all CityEye topics) if missing.

    Topics are always pre-created with their partition counts: auto-created
    topics would get the broker's default count and break co-partitioning.
    """
    topics = topics or all_topics()
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        admin = AIOKafkaAdminClient(bootstrap_servers=kafka.bootstrap, client_id=f"{kafka.client_id_prefix}-admin")
        try:
            await admin.start()
            existing = set(await admin.list_topics())
            missing = [NewTopic(name, n, 1) for name, n in topics.items() if name not in existing]
            if missing:
                try:
                    await admin.create_topics(missing)
                except TopicAlreadyExistsError:
                    pass
                log.info("created Kafka topics: %s", ", ".join(t.name for t in missing))
            return
        except KafkaConnectionError:
            if asyncio.get_running_loop().time() > deadline:
                raise
            await asyncio.sleep(0.5)
        finally:
            await admin.close()


def make_producer(kafka: KafkaSettings, name: str, **overrides) -> AIOKafkaProducer:
    kw = kafka.producer_kwargs()
    kw.update(overrides)
    return AIOKafkaProducer(client_id=f"{kafka.client_id_prefix}-{name}", **kw)


def make_consumer(kafka: KafkaSettings, *topics: str, group: str | None, **overrides) -> AIOKafkaConsumer:
    kw = kafka.consumer_kwargs()
    kw.update(overrides)
    group_id = f"{kafka.consumer_group_prefix}-{group}" if group else None
    return AIOKafkaConsumer(*topics, group_id=group_id, client_id=f"{kafka.client_id_prefix}-{group or 'reader'}", **kw)


async def end_offsets(consumer: AIOKafkaConsumer, partitions: list[TopicPartition],
                      timeout: float = 10.0) -> dict[TopicPartition, int]:
    """End offset (next offset to be written) of each of ``partitions``, from Fetch high watermarks.

    ``consumer`` is a started consumer without a group; the partitions are
    assigned to it and read from their start until each has answered one
    fetch. Raises :class:`TimeoutError` if some partition never answers.
    """
    if not partitions:
        return {}
    consumer.assign(partitions)
    await consumer.seek_to_beginning(*partitions)
    deadline = asyncio.get_running_loop().time() + timeout
    ends: dict[TopicPartition, int] = {}
    while len(ends) < len(partitions):
        if asyncio.get_running_loop().time() > deadline:
            missing = ", ".join(f"{tp.topic}[{tp.partition}]" for tp in partitions if tp not in ends)
            raise TimeoutError(f"no fetch answer within {timeout:.0f} s from {missing}")
        await consumer.getmany(*[tp for tp in partitions if tp not in ends], timeout_ms=100, max_records=1)
        for tp in partitions:
            if tp not in ends and consumer.highwater(tp) is not None:
                ends[tp] = consumer.highwater(tp)
    return ends


async def fetched_end_offsets(kafka: KafkaSettings, partitions: list[TopicPartition],
                              timeout: float = 10.0) -> dict[TopicPartition, int]:
    """:func:`end_offsets` of ``partitions`` read by a short-lived consumer without a group."""
    consumer = make_consumer(kafka, group=None, enable_auto_commit=False, fetch_max_wait_ms=50)
    await consumer.start()
    try:
        return await end_offsets(consumer, partitions, timeout)
    finally:
        await consumer.stop()


async def _all_partitions(consumer: AIOKafkaConsumer, topics: list[str] | None) -> list[TopicPartition]:
    names = sorted(await consumer.topics()) if topics is None else topics
    out = []
    for name in names:
        for p in sorted(consumer.partitions_for_topic(name) or ()):
            out.append(TopicPartition(name, p))
    return out


async def group_lags(kafka: KafkaSettings, topics: list[str] | None = None) -> dict[str, dict[TopicPartition, int]]:
    """Lag (end offset - committed offset) of every consumer group, per partition it committed on.

    Only partitions with a committed offset count (a group reading a topic
    from the start without having committed yet is not seen). ``topics``:
    restrict to these topics (default: every topic of the cluster).
    """
    admin = AIOKafkaAdminClient(bootstrap_servers=kafka.bootstrap, client_id=f"{kafka.client_id_prefix}-lag")
    consumer = make_consumer(kafka, group=None, enable_auto_commit=False, fetch_max_wait_ms=50)
    await admin.start()
    await consumer.start()
    try:
        partitions = await _all_partitions(consumer, topics)
        ends = await end_offsets(consumer, partitions)
        lags: dict[str, dict[TopicPartition, int]] = {}
        for group, *_ in await admin.list_consumer_groups():
            # explicit partitions: some brokers (Tansu) close the connection without them
            committed = await admin.list_consumer_group_offsets(group, partitions=partitions)
            lags[group] = {tp: ends[tp] - meta.offset for tp, meta in committed.items()
                           if meta is not None and meta.offset is not None and meta.offset >= 0 and tp in ends}
        return lags
    finally:
        await consumer.stop()
        await admin.close()


@dataclass(frozen=True)
class CopyPlan:
    """How one topic is carried to another cluster by :func:`copy_topic`.

    ``mode``: ``all`` records, the last ``tail`` of each partition, or the
    ``latest`` value of each key per partition (a record with a ``None``
    value deletes its key, as compaction would). ``transform`` rewrites each
    copied value (``None`` drops the record).
    """

    topic: str
    mode: Literal["all", "tail", "latest"] = "latest"
    tail: int = 1000
    transform: Callable[[bytes | None], bytes | None] | None = field(default=None, compare=False)


async def read_topic(kafka: KafkaSettings, topic: str, tail: int | None = None,
                     timeout: float = 60.0) -> dict[int, list[ConsumerRecord]]:
    """Every record of ``topic`` (or the last ``tail`` of each partition) up to its end now, by partition."""
    consumer = make_consumer(kafka, group=None, enable_auto_commit=False, fetch_max_wait_ms=50)
    await consumer.start()
    try:
        partitions = await _all_partitions(consumer, [topic])
        ends = await end_offsets(consumer, partitions)
        out: dict[int, list[ConsumerRecord]] = {tp.partition: [] for tp in partitions}
        todo = [tp for tp in partitions if ends[tp] > 0]
        for tp in todo:
            consumer.seek(tp, max(0, ends[tp] - tail) if tail is not None else 0)
        deadline = asyncio.get_running_loop().time() + timeout
        while todo:
            if asyncio.get_running_loop().time() > deadline:
                raise TimeoutError(f"{topic}: not read to its end within {timeout:.0f} s")
            batches = await consumer.getmany(*todo, timeout_ms=200)
            for tp, records in batches.items():
                out[tp.partition].extend(r for r in records if r.offset < ends[tp])
            todo = [tp for tp in todo if await consumer.position(tp) < ends[tp]]
        return out
    finally:
        await consumer.stop()


def _selected(plan: CopyPlan, records: list[ConsumerRecord]) -> list[ConsumerRecord]:
    if plan.mode != "latest":
        return records
    latest: dict[bytes | None, ConsumerRecord] = {}
    for record in records:
        latest.pop(record.key, None)  # re-inserted last: the copy keeps the order of the latest writes
        latest[record.key] = record
    return [r for r in latest.values() if r.value is not None]


async def copy_topic(source: KafkaSettings, target: KafkaSettings, plan: CopyPlan,
                     **producer_overrides) -> int:
    """Copy ``plan.topic`` from ``source`` to ``target`` (created there with the same partition count).

    Each record keeps its partition, key, headers and timestamp; offsets
    start again at the target's. Returns how many records were written.
    ``producer_overrides`` tune the target's producer (e.g. ``max_batch_size``).
    """
    by_partition = await read_topic(source, plan.topic, tail=plan.tail if plan.mode == "tail" else None)
    await ensure_topics(target, {plan.topic: len(by_partition)})
    producer = make_producer(target, "copy", **producer_overrides)
    await producer.start()
    sent = []
    try:
        for partition, records in sorted(by_partition.items()):
            for record in _selected(plan, records):
                value = plan.transform(record.value) if plan.transform else record.value
                if value is None and plan.transform is not None:
                    continue
                sent.append(await producer.send(plan.topic, value, key=record.key, partition=partition,
                                                timestamp_ms=record.timestamp,
                                                headers=list(record.headers or ())))
        await asyncio.gather(*sent)
    finally:
        await producer.stop()
    log.info("copied %d records of %s (%s)", len(sent), plan.topic, plan.mode)
    return len(sent)
