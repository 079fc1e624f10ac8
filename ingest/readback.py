"""Read Kafka topics back from the beginning until a condition holds.

Used to check what the gateway wrote (tests, ``bench/bench_gateway.py``,
and by hand when investigating a dead letter): no consumer group, no
commits, every partition from the earliest offset.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Sequence

from aiokafka.structs import ConsumerRecord

from cityeye.config import KafkaSettings
from cityeye.consume import Batches, consume
from cityeye.kafka import make_consumer

__all__ = ["read_until"]

Records = dict[str, list[ConsumerRecord]]


async def read_until(kafka: KafkaSettings, topics: Sequence[str], until: Callable[[Records], bool],
                     timeout: float = 60.0) -> Records:
    """All records of ``topics`` (by topic, in partition order) once ``until(records)`` is true.

    Raises :class:`TimeoutError` with the counts so far after ``timeout`` seconds.
    """
    out: Records = {t: [] for t in topics}
    if until(out):
        return out
    deadline = time.monotonic() + timeout
    done = asyncio.Event()

    def collect(batches: Batches) -> None:
        for tp, msgs in batches.items():
            out[tp.topic].extend(msgs)
        if until(out):
            done.set()
        elif time.monotonic() > deadline:
            counts = ", ".join(f"{t}: {len(v)}" for t, v in out.items())
            raise TimeoutError(f"condition not met after {timeout:.0f} s ({counts})")

    consumer = make_consumer(kafka, *topics, group=None)
    await consumer.start()
    try:
        await consume(consumer, collect, done, max_records=None, name="read-back")
    finally:
        await consumer.stop()
    return out
