"""Test helpers: produce to and read back from the test broker, a group's committed total, wait for a condition."""

from __future__ import annotations

import asyncio
import time
from typing import Awaitable, Callable

from aiokafka import AIOKafkaConsumer

from cityeye.config import KafkaSettings
from cityeye.contracts import TOPIC_PARTITIONS
from cityeye.kafka import make_producer
from streams.replay import committed_offsets

__all__ = ["committed_total", "produce", "read_topic", "wait_until"]


async def produce(kafka: KafkaSettings, topic: str, records: list[tuple[bytes | None, bytes]]) -> None:
    """Send ``(key, value)`` records and wait for the broker's acknowledgement."""
    producer = make_producer(kafka, "test")
    await producer.start()
    try:
        for key, value in records:
            await producer.send_and_wait(topic, value, key=key)
    finally:
        await producer.stop()


async def read_topic(kafka: KafkaSettings, topic: str, count: int, timeout: float = 15.0) -> list:
    """At least ``count`` records of ``topic`` from the start (fewer if the timeout passes)."""
    consumer = AIOKafkaConsumer(topic, bootstrap_servers=kafka.bootstrap, auto_offset_reset="earliest",
                                fetch_max_wait_ms=100)
    await consumer.start()
    records = []
    deadline = time.monotonic() + timeout
    try:
        while len(records) < count and time.monotonic() < deadline:
            batches = await consumer.getmany(timeout_ms=200)
            for msgs in batches.values():
                records.extend(msgs)
    finally:
        await consumer.stop()
    return records


async def committed_total(kafka: KafkaSettings, topic: str, group: str | None = None) -> int:
    """``group``'s committed offsets on every partition of ``topic``, summed (a partition without one: 0);
    ``group`` None: the streams worker's (``<consumer_group_prefix>-streams``)."""
    group = group or f"{kafka.consumer_group_prefix}-streams"
    tps = [(topic, p) for p in range(TOPIC_PARTITIONS[topic])]
    return sum((await committed_offsets(kafka, group, tps)).values())


async def wait_until(check: Callable[[], bool | Awaitable[bool]], timeout: float = 20.0, every: float = 0.1) -> bool:
    """Poll ``check`` until it is true; False after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        result = check()
        if asyncio.iscoroutine(result):
            result = await result
        if result:
            return True
        await asyncio.sleep(every)
    return False
