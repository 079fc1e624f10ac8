"""Kafka helpers shared by every stage: topic creation, client factories, end offsets, lag, topic copy.

Only the plain Kafka protocol is used (aiokafka); broker-specific tuning
comes from :class:`cityeye.config.KafkaSettings`.

* :func:`end_offsets` -- each partition's end offset as a Fetch answers it
  (its high watermark), not ListOffsets: exact on every broker, including
  those that count batches rather than records there (Tansu);
  :func:`fetched_end_offsets` the same with a consumer of its own;
* :func:`group_lags` -- every consumer group's lag on the partitions it has
  committed offsets for (ListGroups, OffsetFetch, Fetch); :class:`LagReader`
  reads it again and again over the same two clients;
* :func:`read_ranges` -- the records ``[start, end)`` of partitions, a
  range that cannot be completed given up after idle fetches or raised on
  a timeout (the caller says which); :func:`read_topic` reads a topic (or
  its tail) to its end with it;
* :func:`copy_topic` -- copy a topic to another cluster: every record, the
  last N of each partition, or the latest value per key (a compaction by
  hand), partitions, keys, headers and timestamps kept, values optionally
  transformed on the way.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass, field
from typing import Awaitable, Callable, Literal

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import KafkaConnectionError, TopicAlreadyExistsError
from aiokafka.structs import ConsumerRecord, TopicPartition

from cityeye.config import KafkaSettings
from cityeye.consume import Batches, consume
from cityeye.contracts import all_topics

__all__ = ["ensure_topics", "make_producer", "make_consumer", "end_offsets", "fetched_end_offsets", "LagReader", "group_lags",
           "CopyPlan", "copy_topic", "read_topic", "read_ranges"]

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


def _reader(kafka: KafkaSettings) -> AIOKafkaConsumer:
    """A consumer without a group for reading partitions directly (no commits; a short fetch wait)."""
    return make_consumer(kafka, group=None, enable_auto_commit=False, fetch_max_wait_ms=50)


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
    consumer = _reader(kafka)
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


class LagReader:
    """Every consumer group's lag, read as often as wanted over one admin client and one consumer.

    ``async with LagReader(kafka) as reader: lags = await reader.lags()``;
    :func:`group_lags` reads once.
    """

    def __init__(self, kafka: KafkaSettings) -> None:
        self.kafka = kafka
        self._admin = AIOKafkaAdminClient(bootstrap_servers=kafka.bootstrap, client_id=f"{kafka.client_id_prefix}-lag")
        self._consumer = _reader(kafka)

    async def __aenter__(self) -> "LagReader":
        await self._admin.start()
        try:
            await self._consumer.start()
        except BaseException:
            await self._admin.close()
            raise
        return self

    async def __aexit__(self, *exc: object) -> None:
        try:
            await self._consumer.stop()
        finally:
            await self._admin.close()

    async def lags(self, topics: list[str] | None = None, *, groups: list[str] | None = None,
                   uncommitted_as_lag: bool = False) -> dict[str, dict[TopicPartition, int]]:
        """Lag (end offset - committed offset) of every consumer group, per partition it committed on.

        Only partitions with a committed offset count (a group reading a topic
        from the start without having committed yet is not seen), unless
        ``uncommitted_as_lag``: then every partition of ``topics`` without a
        committed offset counts its end offset as the lag (for groups that
        must read all of them). ``topics``: restrict to these topics (default:
        every topic of the cluster, as it is now); ``groups``: to these
        groups (full names; default: every group the cluster lists).
        """
        partitions = await _all_partitions(self._consumer, topics)
        ends = await end_offsets(self._consumer, partitions)  # assigns afresh: no high watermark of a former read
        lags: dict[str, dict[TopicPartition, int]] = {}
        if groups is None:
            groups = [group for group, *_ in await self._admin.list_consumer_groups()]
        for group in groups:
            # explicit partitions: some brokers (Tansu) close the connection without them
            committed = await self._admin.list_consumer_group_offsets(group, partitions=partitions)
            lags[group] = {tp: ends[tp] - meta.offset for tp, meta in committed.items()
                           if meta is not None and meta.offset is not None and meta.offset >= 0 and tp in ends}
            if uncommitted_as_lag:
                lags[group] = {tp: lags[group].get(tp, end) for tp, end in ends.items()}
        return lags


async def group_lags(kafka: KafkaSettings, topics: list[str] | None = None) -> dict[str, dict[TopicPartition, int]]:
    """Every consumer group's lag once (:meth:`LagReader.lags`)."""
    async with LagReader(kafka) as reader:
        return await reader.lags(topics)


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
    """Every record of ``topic`` (or the last ``tail`` of each partition) up to its end now, by partition.

    Raises :class:`TimeoutError` when the topic is not read to that end within ``timeout`` seconds.
    """
    consumer = _reader(kafka)
    await consumer.start()
    try:
        partitions = await _all_partitions(consumer, [topic])
        ends = await end_offsets(consumer, partitions)
        out: dict[int, list[ConsumerRecord]] = {tp.partition: [] for tp in partitions}
        ranges = {tp: (max(0, ends[tp] - tail) if tail is not None else 0, ends[tp]) for tp in partitions}
        await _read_ranges_with(consumer, ranges, lambda r: out[r.partition].append(r), give_up_after_idle=None,
                                timeout=timeout, fetch_timeout_ms=200)
        return out
    finally:
        await consumer.stop()


async def read_ranges(kafka: KafkaSettings, ranges: dict[tuple[str, int], tuple[int, int]],
                      handle: Callable[[ConsumerRecord], Awaitable[None] | None], *,
                      give_up_after_idle: int | None = 3, timeout: float | None = None) -> int:
    """Call ``handle(record)`` for every record in ``[start, end)`` of each partition; return the count.

    A range that cannot be read completely (its records were deleted, the
    broker returned less) ends one of two ways, chosen by the caller:

    * ``give_up_after_idle=N``: once ``N`` fetches in a row returned nothing,
      the ranges still open are given up with a warning (the worker's hole
      reading and replay: what is not there cannot be waited for);
    * ``timeout=T``: :class:`TimeoutError` after ``T`` seconds (a copy that
      must be complete).

    With both, whichever comes first; with neither, it waits for ever.
    """
    todo = {TopicPartition(t, p): (s, e) for (t, p), (s, e) in ranges.items() if e > s}
    if not todo:
        return 0
    consumer = make_consumer(kafka, group=None)
    await consumer.start()
    try:
        return await _read_ranges_with(consumer, todo, handle, give_up_after_idle=give_up_after_idle,
                                       timeout=timeout, fetch_timeout_ms=1000)
    finally:
        await consumer.stop()


async def _read_ranges_with(consumer: AIOKafkaConsumer, ranges: dict[TopicPartition, tuple[int, int]],
                            handle: Callable[[ConsumerRecord], Awaitable[None] | None], *,
                            give_up_after_idle: int | None, timeout: float | None, fetch_timeout_ms: int) -> int:
    """:func:`read_ranges` with a started consumer without a group (it is assigned the ranges' partitions)."""
    todo = {tp: end for tp, (start, end) in ranges.items() if end > start}
    if not todo:
        return 0
    loop = asyncio.get_running_loop()
    deadline = None if timeout is None else loop.time() + timeout
    count = idle = 0
    done = asyncio.Event()

    async def feed(batch: Batches) -> None:
        nonlocal count, idle
        idle = 0 if any(batch.values()) else idle + 1
        for tp, records in batch.items():
            end = todo.get(tp)
            if end is None:  # read completely, paused
                continue
            for rec in records:
                if rec.offset >= end:
                    break
                result = handle(rec)
                if result is not None:
                    await result
                count += 1
            if (records and records[-1].offset >= end - 1) or await consumer.position(tp) >= end:
                del todo[tp]
                consumer.pause(tp)
        if not todo:
            done.set()
        elif give_up_after_idle is not None and idle >= give_up_after_idle:
            log.warning("no more records for %s; giving up on these ranges",
                        ", ".join(f"{tp.topic}[{tp.partition}] up to {end}" for tp, end in todo.items()))
            done.set()
        elif deadline is not None and loop.time() > deadline:
            raise TimeoutError("not read to the end within {:.0f} s: {}".format(
                timeout, ", ".join(f"{tp.topic}[{tp.partition}] up to {end}" for tp, end in todo.items())))

    consumer.assign(list(todo))
    for tp, (start, _) in ranges.items():
        if tp in todo:
            consumer.seek(tp, start)
    # paused partitions (ranges read completely) return nothing more
    await consume(consumer, feed, done, timeout_ms=fetch_timeout_ms, max_records=5000, partitions=list(todo),
                  name="range reader")
    return count


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
