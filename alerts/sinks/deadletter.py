"""Dead letters of the alert sinks, on Kafka topic ``alerts.deadletter``.

A :class:`SinkDeadLetter` is written (JSON, keyed by the event id when
known) for an ``alerts.events`` record that could not be decoded, or that
the destination refused for good (webhook 4xx, InfluxDB parse error), or
that still failed after the last retry. It keeps where the record came from
(topic, partition, offset), why it failed, and the payload (as text with
replacement characters, and the exact bytes in base64), so an operator can
inspect and replay it.
"""

from __future__ import annotations

import base64
import json
import time
from dataclasses import dataclass

from aiokafka import AIOKafkaProducer
from aiokafka.errors import KafkaError

from alerts.sinks.base import SinkWriteError
from cityeye.contracts import TOPIC_ALERTS_DEADLETTER, to_json

__all__ = ["SinkDeadLetter", "DeadLetterWriter", "MAX_PAYLOAD_BYTES"]

#: payloads larger than this are cut (``truncated`` is set): Kafka's default record limit is 1 MB
MAX_PAYLOAD_BYTES = 256 * 1024


@dataclass
class SinkDeadLetter:
    """One record a sink gave up on."""

    sink: str
    reason: str
    topic: str
    partition: int | None
    offset: int | None
    payload: str
    payload_b64: str
    failed_at: float
    event_id: str | None = None
    status: int | None = None
    truncated: bool = False

    @classmethod
    def of(cls, sink: str, reason: str, raw: bytes, *, topic: str = "", partition: int | None = None,
           offset: int | None = None, event_id: str | None = None, status: int | None = None) -> "SinkDeadLetter":
        """A dead letter for the raw bytes ``raw``."""
        truncated = len(raw) > MAX_PAYLOAD_BYTES
        kept = raw[:MAX_PAYLOAD_BYTES]
        return cls(sink=sink, reason=reason[:1000], topic=topic, partition=partition, offset=offset,
                   payload=kept.decode("utf-8", errors="replace"), payload_b64=base64.b64encode(kept).decode(),
                   failed_at=time.time(), event_id=event_id, status=status, truncated=truncated)

    @classmethod
    def from_json(cls, raw: bytes | str) -> "SinkDeadLetter":
        return cls(**json.loads(raw))


class DeadLetterWriter:
    """Writes :class:`SinkDeadLetter` s with a started producer (acks=all)."""

    def __init__(self, producer: AIOKafkaProducer, topic: str = TOPIC_ALERTS_DEADLETTER) -> None:
        self.producer = producer
        self.topic = topic

    async def send(self, record: SinkDeadLetter) -> None:
        """Write ``record``; :class:`SinkWriteError` if Kafka did not take it."""
        key = (record.event_id or "").encode() or None
        try:
            await self.producer.send_and_wait(self.topic, to_json(record), key=key)
        except KafkaError as exc:
            raise SinkWriteError(f"cannot write to {self.topic}: {type(exc).__name__}") from None
