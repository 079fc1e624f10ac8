"""One consume loop for every Kafka reader of the project.

Every reader (the dispatcher and its router, the sinks, the embedded
runner's alert printer, the gateway's read-back, the worker's replay) does
the same thing: fetch a batch, handle it, commit what the handler says is
done, and stop when asked. :func:`consume` is that loop, once::

    async def handle(batches):            # {TopicPartition: [ConsumerRecord, ...]}, may be empty
        ...                               # apply, write, forward ...
        return {tp: records[-1].offset + 1 for tp, records in batches.items()}

    await consume(consumer, handle, stop)

* ``handle`` is called for every fetch, also an empty one (so a handler can
  watch a deadline or the health of something else, and set ``stop``);
* it returns the offsets to commit (``{TopicPartition: next offset}``), or
  ``None`` / ``{}`` to commit nothing (read-only readers, or a batch that
  must be read again after the handler seeked back);
* a failed commit (a rebalance, a broker restart) is logged and the loop
  goes on: the records are read again and the handlers are idempotent
  (at-least-once input, exactly-once effect is each caller's contract);
* the loop ends when ``stop`` is set, checked before each fetch (a handler
  that is done, e.g. a reader whose condition holds, sets ``stop``). It
  does not start or stop the consumer: the caller owns it;
* ``timeout_ms`` is a number or a function called before each fetch (a
  sink waits no longer than until its buffer is due);
* a consumer in a group reports its lag per owned partition
  (``cityeye_consumergroup_lag``, cityeye/metrics.py) at most once a second.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
import time
from typing import Any, Awaitable, Callable, Sequence, Union

from aiokafka.errors import KafkaError
from aiokafka.structs import ConsumerRecord, TopicPartition

from cityeye.metrics import ConsumerLag, report_lag

__all__ = ["Batches", "Offsets", "BatchHandler", "FetchTimeout", "consume", "next_offsets"]

log = logging.getLogger(__name__)

Batches = dict[TopicPartition, list[ConsumerRecord]]
Offsets = dict[TopicPartition, int]
BatchHandler = Callable[[Batches], "Awaitable[Offsets | None] | Offsets | None"]
FetchTimeout = Union[int, Callable[[], int]]


def next_offsets(batches: Batches) -> Offsets:
    """The offsets that commit all of ``batches`` (the last record's offset + 1 per partition)."""
    return {tp: records[-1].offset + 1 for tp, records in batches.items() if records}


async def consume(consumer: Any, handle: BatchHandler, stop: asyncio.Event, *, timeout_ms: FetchTimeout = 200,
                  max_records: int | None = 1000, partitions: Sequence[TopicPartition] = (),
                  name: str = "consumer") -> None:
    """Fetch, handle and commit until ``stop`` is set (see the module docstring).

    ``partitions`` restricts the fetch (``getmany(*partitions)``); ``name``
    appears in the commit-failure warning; ``timeout_ms`` may be a function
    returning the fetch timeout.
    """
    fetch_timeout = timeout_ms if callable(timeout_ms) else (lambda: timeout_ms)
    group = getattr(consumer, "_group_id", None)
    lag, lag_due = (ConsumerLag(group) if group else None), 0.0
    while not stop.is_set():
        batches = await consumer.getmany(*partitions, timeout_ms=fetch_timeout(), max_records=max_records)
        result = handle(batches)
        if inspect.isawaitable(result):
            result = await result
        if lag is not None and time.monotonic() >= lag_due:
            lag_due = time.monotonic() + LAG_INTERVAL_S
            await report_lag(consumer, lag, timeout_s=0.05)
        if not result:
            continue
        try:
            await consumer.commit(result)
        except KafkaError as exc:
            log.warning("%s: offset commit failed (the records will be read again, applied once): %s", name, exc)


#: seconds between two lag reports of one consume loop
LAG_INTERVAL_S = 1.0

