"""The gateway's Kafka bookkeeping: the readings topics' partition counts and a record's delivery.

The intake aggregates readings per partition (ingest/aggregation.py), so it
must know every readings topic's partition count before it builds a batch's
records; the intake probe (ingest/intake_probe.py) sends progress to every
partition of the topics known. Both learn counts through
:meth:`PartitionCounts.learn`, the one metadata look-up
(:func:`partition_count`): at start best effort within a timeout, in the
intake until the producer's metadata has the topic.

:func:`deliver` waits until Kafka has a record, resending as long as it
takes; a record Kafka refuses as too large is split or shortened
(:func:`shrunk`) instead of resent as it is.
"""

from __future__ import annotations

import asyncio
import base64
import logging
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import replace
from typing import Any

from aiokafka.errors import KafkaError, MessageSizeTooLargeError

from cityeye.contracts import DeadLetter, Reading
from ingest.aggregation import OutRecord

__all__ = ["TRUNCATED_PAYLOAD", "PartitionCounts", "deliver", "encode", "partition_count", "shrunk"]

log = logging.getLogger(__name__)

#: a dead letter Kafka refuses as too large is resent with this much payload
TRUNCATED_PAYLOAD = 1024


async def partition_count(producer: Any, topic: str, timeout: float | None = None) -> int | None:
    """How many partitions ``topic`` has in the producer's metadata; None if Kafka does not say
    (an error, no answer within ``timeout`` s, or no partitions yet)."""
    try:
        found = await asyncio.wait_for(producer.partitions_for(topic), timeout)
    except (KafkaError, asyncio.TimeoutError) as exc:
        log.debug("no metadata for %s (%s)", topic, type(exc).__name__)
        return None
    return len(found) if found else None


class PartitionCounts(dict[str, int]):
    """Partition count per topic (readings topic -> count), each topic looked up once."""

    async def learn(self, producer: Any, topics: Iterable[str], *, timeout: float | None = None,
                    retry_s: float = 0.5) -> None:
        """Add the partition count of each of ``topics`` not known yet.

        With ``timeout`` None, retry every ``retry_s`` s until the metadata has
        each topic (the intake cannot build a record without its partition);
        with a ``timeout``, best effort: a topic Kafka does not answer for within
        it is left to be learnt later (at start, with its first reading).
        """
        for topic in set(topics) - self.keys():
            count = await partition_count(producer, topic, timeout)
            while count is None and timeout is None:
                log.warning("no metadata for %s yet; retrying in %.1f s", topic, retry_s)
                await asyncio.sleep(retry_s)
                count = await partition_count(producer, topic)
            if count is not None:
                self[topic] = count


async def deliver(record: OutRecord, send: Callable[[OutRecord], Awaitable[asyncio.Future]],
                  on_retry: Callable[[OutRecord, Exception, float], None]) -> None:
    """Wait until Kafka has ``record``, resending with backoff as long as it takes.

    ``send(record)`` produces a record and returns its pending acknowledgement;
    ``on_retry(record, error, delay)`` is told of each failure before the wait
    of ``delay`` s. An aggregate Kafka refuses as too large is split in two (in
    order); a single reading or dead letter becomes a shortened dead letter.
    """
    delay = 0.2
    while True:
        try:
            if record.future is None:
                record.future = await send(record)
            await record.future
            return
        except MessageSizeTooLargeError:
            record.future = None
            if record.encoded is not None and len(record.encoded) > 1:
                for half in record.halves():
                    await deliver(half, send, on_retry)
                return
            short = OutRecord.single(shrunk(record.outcomes[0]))
            record.topic, record.partition, record.key = short.topic, short.partition, short.key
            record.value, record.headers, record.outcomes = short.value, short.headers, short.outcomes
            record.encoded = None
        except Exception as exc:  # KafkaError and anything else the client raises
            record.future = None
            on_retry(record, exc, delay)
            await asyncio.sleep(delay)
            delay = min(delay * 2, 10.0)


def encode(outcome: Reading | DeadLetter) -> bytes:
    """An outcome's JSON as its single record carries it."""
    return OutRecord.single(outcome).value


def shrunk(outcome: Reading | DeadLetter) -> DeadLetter:
    """A dead letter small enough for Kafka for an outcome whose record was too large."""
    if isinstance(outcome, Reading):
        raw = encode(outcome)[:TRUNCATED_PAYLOAD]
        return DeadLetter.of(raw, outcome.mqtt_topic, "too_large: the reading's Kafka record exceeds the "
                             f"producer's max_request_size (first {TRUNCATED_PAYLOAD} bytes kept)",
                             outcome.received_at, outcome.sensor_id)
    raw = base64.b64decode(outcome.payload_b64)[:TRUNCATED_PAYLOAD]
    return replace(outcome, payload=raw.decode("utf-8", errors="replace"),
                   payload_b64=base64.b64encode(raw).decode("ascii"),
                   reason=f"{outcome.reason} (payload truncated to {TRUNCATED_PAYLOAD} bytes)")
