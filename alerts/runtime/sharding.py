"""The router stage: ``alerts.events`` → ``alerts.grouped``, one partition per shard.

Every dispatcher worker runs one :class:`Router` beside its partition
consumer (alerts/dispatcher.py). It consumes ``alerts.events``
(consumer group ``<prefix>-dispatcher-router``) and produces each event
unchanged to ``alerts.grouped``, with header ``cityeye-source`` naming its
original ``topic/partition/offset``:

* ``sharding.key`` ``district`` / ``kind`` / ``sensor`` (``sharding.enabled``):
  keyed by that label, so Kafka's partitioner spreads the shards over the
  partitions (an undecodable event keeps its own key and is dead-lettered
  by the partition that receives it);
* ``none`` (the default, ``sharding.enabled: false``): every record goes to
  partition :data:`UNSHARDED_PARTITION`, so one state file holds every
  alert and any ``group_by`` / ``inhibit_rules`` is allowed.

The source offsets are committed only after Kafka acknowledged every
produced record (acks=all): at-least-once, order kept per key; the
partitions' owners apply each event once (event ids). On the first
assignment the router resumes where the former single dispatcher's
consumer group stopped (alerts/runtime/upgrade.py).
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from aiokafka.errors import KafkaError

from alerts.runtime.actions import SOURCE_HEADER
from alerts.runtime.upgrade import FORMER_GROUP, ResumeAfterOtherGroup
from cityeye.config import KafkaSettings
from cityeye.consume import Batches, Offsets, consume, next_offsets
from cityeye.contracts import TOPIC_ALERTS, TOPIC_ALERTS_GROUPED, decode_alert_event
from cityeye.kafka import make_consumer

__all__ = ["Router", "shard_key", "hop_fetch_wait_ms", "UNSHARDED", "UNSHARDED_PARTITION", "ROUTER_GROUP"]

log = logging.getLogger(__name__)

#: ``sharding.key`` value meaning one shard: everything in one partition
UNSHARDED = "none"
#: the ``alerts.grouped`` partition (and state file) of an unsharded dispatcher
UNSHARDED_PARTITION = 0
ROUTER_GROUP = "dispatcher-router"


def hop_fetch_wait_ms(kafka: KafkaSettings) -> int:
    """``fetch_max_wait_ms`` of the router's and the partition consumer's fetches.

    An event crosses two consumers (router, then partition owner) where the
    former single dispatcher had one. A broker without early fetch answers
    (Tansu) holds an empty fetch for the whole wait, so each consumer waits a
    fifth of the profile's value (Tansu: 20 ms): the two hops stay within the
    one hop's latency (bench/bench_dispatch.py). Kafka answers a fetch as
    soon as data arrives, so there this only sets how often an idle worker polls.
    """
    return max(1, kafka.fetch_max_wait_ms // 5)


def shard_key(raw: bytes | None, key: str) -> bytes | None:
    """The shard key of an ``alerts.events`` value; ``None`` if it is not a valid event."""
    try:
        ev = decode_alert_event(raw)
    except ValueError:
        return None
    value = {"district": ev.district, "kind": ev.kind, "sensor": ev.sensor_id}[key]
    return value.encode()


class Router:
    """``alerts.events`` → ``alerts.grouped`` by shard key (at-least-once, order kept per key)."""

    def __init__(self, kafka: KafkaSettings, key: str) -> None:
        self.kafka, self.key = kafka, key

    async def run(self, stop: asyncio.Event, producer: Any) -> None:
        consumer = make_consumer(self.kafka, group=ROUTER_GROUP, fetch_max_wait_ms=hop_fetch_wait_ms(self.kafka))
        await consumer.start()
        handover = ResumeAfterOtherGroup(consumer, self.kafka, FORMER_GROUP)
        consumer.subscribe([TOPIC_ALERTS], listener=handover)

        async def forward(batches: Batches) -> Offsets | None:
            batches = handover.admit(batches)
            if not batches:
                return None
            try:
                await self._forward(batches, producer)
            except KafkaError as exc:  # nothing committed: read the batch again and re-send
                log.warning("re-keying into %s failed (the batch is read again): %s", TOPIC_ALERTS_GROUPED, exc)
                assigned = consumer.assignment()
                for tp, records in batches.items():
                    if tp in assigned:  # a revoked one is re-read by its next owner anyway
                        consumer.seek(tp, records[0].offset)
                await asyncio.sleep(0.5)
                return None
            return next_offsets(batches)  # re-sent after a failed commit; applied once by the owners

        try:
            await consume(consumer, forward, stop, name="dispatcher router")
        finally:
            await consumer.stop()

    async def _forward(self, batches: Batches, producer: Any) -> None:
        acks = []
        for records in batches.values():
            for rec in records:
                source = [(SOURCE_HEADER, f"{rec.topic}/{rec.partition}/{rec.offset}".encode())]
                # the worker's timestamp goes along: the dispatcher's latency counts from it
                if self.key == UNSHARDED:
                    ack = await producer.send(TOPIC_ALERTS_GROUPED, rec.value, key=rec.key, timestamp_ms=rec.timestamp,
                                              partition=UNSHARDED_PARTITION, headers=source)
                else:
                    key = shard_key(rec.value, self.key)
                    ack = await producer.send(TOPIC_ALERTS_GROUPED, rec.value, timestamp_ms=rec.timestamp,
                                              key=key if key is not None else rec.key, headers=source)
                acks.append(ack)
        await asyncio.gather(*acks)
