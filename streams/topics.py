"""The Faust topics of the stream processor, all raw bytes (see streams.models).

Topics are never declared by the worker (``internal=False``): they are
pre-created by :func:`cityeye.kafka.ensure_topics` with the partition counts
of :data:`cityeye.contracts.TOPIC_PARTITIONS`, which all readings topics
share so that a worker owning partition *p* of each readings topic also owns
partition *p* of the snapshot table's changelog.
"""

from __future__ import annotations

from dataclasses import dataclass

import faust
from faust.types import TopicT

from cityeye.contracts import TOPIC_DEADLETTER, TOPIC_PARTITIONS, all_topics, readings_topic
from cityeye.kinds import kind_names

__all__ = ["StreamTopics", "define_topics", "readings_partitions"]


def readings_partitions() -> int:
    """The partition count shared by every ``readings.<kind>`` topic."""
    topics = all_topics()
    counts = {topics[readings_topic(k)] for k in kind_names()}
    if len(counts) != 1:
        raise ValueError(f"readings topics must be co-partitioned, got partition counts {sorted(counts)}")
    return counts.pop()


@dataclass(frozen=True)
class StreamTopics:
    """``readings`` (all kinds, one subscription) and ``deadletter`` (alert events go out through
    streams/alert_sender.py, on a producer of their own)."""

    readings: TopicT
    deadletter: TopicT

    @property
    def readings_names(self) -> frozenset[str]:
        return frozenset(self.readings.topics)


def define_topics(app: faust.App) -> StreamTopics:
    raw = {"key_type": bytes, "value_type": bytes, "key_serializer": "raw", "value_serializer": "raw"}
    return StreamTopics(
        readings=app.topic(*(readings_topic(k) for k in kind_names()), partitions=readings_partitions(), **raw),
        deadletter=app.topic(TOPIC_DEADLETTER, partitions=TOPIC_PARTITIONS[TOPIC_DEADLETTER], **raw),
    )
