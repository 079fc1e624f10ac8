"""Kafka records for a batch of validation outcomes: readings aggregated per partition.

The gateway validates a batch of MQTT messages and hands the outcomes, in
arrival order, to :func:`build_records`. Readings of one ``readings.<kind>``
partition (the partition their sensor key maps to,
:func:`cityeye.reading_records.partition_for`) go into one aggregated record
(header ``cityeye-agg: 1``, a JSON array; cityeye/reading_records.py) until it
holds ``max_readings`` readings or ``max_bytes`` bytes, then the next one is
opened; dead letters stay single records on ``readings.deadletter``. Each
sensor's readings keep their order: within a record, and across the records
of a partition (which are produced in the order returned).

With ``max_readings == 1`` every reading is a single record keyed by its
sensor id, the format of gateways before aggregation.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable, Sequence

from cityeye.contracts import TOPIC_DEADLETTER, DeadLetter, Reading, readings_topic
from cityeye.reading_records import AGGREGATE_HEADERS, encode_aggregate, encode_reading, partition_for

__all__ = ["OutRecord", "build_records", "encode_dead_letter"]


def encode_dead_letter(dead: DeadLetter) -> bytes:
    """A dead letter's JSON (``contracts.to_json`` without ``asdict``'s deep copy; the class is flat)."""
    return json.dumps(dead.__dict__, separators=(",", ":"), ensure_ascii=False, allow_nan=False).encode(
        "utf-8", errors="backslashreplace")  # a lone surrogate (from a payload or topic) as its JSON escape


class OutRecord:
    """One Kafka record to produce, the outcomes it carries and its pending send.

    ``partition`` is ``None`` for a record the producer partitions by its key
    (a dead letter, a single reading); an aggregate names its partition.
    """

    __slots__ = ("topic", "partition", "key", "value", "headers", "outcomes", "encoded", "future")

    def __init__(self, topic: str, partition: int | None, key: bytes | None, value: bytes,
                 headers: list[tuple[str, bytes]] | None, outcomes: list[Reading | DeadLetter],
                 encoded: list[bytes] | None = None) -> None:
        self.topic = topic
        self.partition = partition
        self.key = key
        self.value = value
        self.headers = headers
        self.outcomes = outcomes
        #: the aggregate's elements (to split a record Kafka refuses as too large)
        self.encoded = encoded
        self.future: asyncio.Future | None = None

    @classmethod
    def single(cls, outcome: Reading | DeadLetter) -> "OutRecord":
        """The record of one outcome: a reading keyed by its sensor, or a dead letter."""
        if isinstance(outcome, Reading):
            return cls(readings_topic(outcome.kind), None, outcome.sensor_id.encode(), encode_reading(outcome),
                       None, [outcome])
        key = outcome.sensor_id.encode() if outcome.sensor_id else None
        return cls(TOPIC_DEADLETTER, None, key, encode_dead_letter(outcome), None, [outcome])

    @classmethod
    def aggregate(cls, topic: str, partition: int, readings: list[Reading], encoded: list[bytes]) -> "OutRecord":
        """The aggregated record of ``readings`` (all of ``topic[partition]``, in order)."""
        return cls(topic, partition, None, encode_aggregate(encoded), list(AGGREGATE_HEADERS), readings, encoded)

    def halves(self) -> list["OutRecord"]:
        """An aggregate split in two, in order (for a record Kafka refused as too large)."""
        assert self.encoded is not None and len(self.encoded) > 1
        mid = len(self.encoded) // 2
        return [OutRecord.aggregate(self.topic, self.partition, self.outcomes[:mid], self.encoded[:mid]),
                OutRecord.aggregate(self.topic, self.partition, self.outcomes[mid:], self.encoded[mid:])]


class _Open:
    __slots__ = ("readings", "encoded", "size")

    def __init__(self) -> None:
        self.readings: list[Reading] = []
        self.encoded: list[bytes] = []
        self.size = 2


def build_records(outcomes: Sequence[Reading | DeadLetter], partitions: Callable[[str], int], *,
                  max_readings: int, max_bytes: int) -> list[OutRecord]:
    """The records of ``outcomes`` (see the module docstring); ``partitions(topic)`` gives a topic's count."""
    if max_readings == 1:
        return [OutRecord.single(o) for o in outcomes]
    out: list[OutRecord] = []
    open_: dict[tuple[str, int], _Open] = {}
    topics: dict[str, tuple[str, int]] = {}  # kind -> (topic, partitions)
    for outcome in outcomes:
        if not isinstance(outcome, Reading):
            out.append(OutRecord.single(outcome))
            continue
        topic_n = topics.get(outcome.kind)
        if topic_n is None:
            topic = readings_topic(outcome.kind)
            topic_n = topics[outcome.kind] = (topic, partitions(topic))
        tp = (topic_n[0], partition_for(outcome.sensor_id, topic_n[1]))
        body = encode_reading(outcome)
        agg = open_.get(tp)
        if agg is None:
            agg = open_[tp] = _Open()
        elif agg.size + len(body) + 1 > max_bytes:
            out.append(OutRecord.aggregate(tp[0], tp[1], agg.readings, agg.encoded))
            agg = open_[tp] = _Open()
        agg.readings.append(outcome)
        agg.encoded.append(body)
        agg.size += len(body) + 1
        if len(agg.readings) >= max_readings:
            out.append(OutRecord.aggregate(tp[0], tp[1], agg.readings, agg.encoded))
            del open_[tp]
    out.extend(OutRecord.aggregate(t, p, agg.readings, agg.encoded) for (t, p), agg in open_.items())
    return out
