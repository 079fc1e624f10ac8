"""The ingest gateway's Prometheus metrics (docs/metrics.md)."""

from __future__ import annotations

import collections
from typing import Sequence

from prometheus_client import Counter, Gauge

from cityeye.contracts import DeadLetter, Reading
from cityeye.metrics import BatchHistogram
from ingest.bridge import Inbound
from ingest.validation import reason_code

__all__ = ["MESSAGES", "ACCEPTED", "DEAD_LETTERED", "KAFKA_RETRIES", "UNACKED", "GATEWAY_LATENCY", "observe_batch"]

MESSAGES = Counter("cityeye_ingest_messages_total",
                   "MQTT messages the gateway handed to Kafka and acknowledged (a message may hold many readings)")
ACCEPTED = Counter("cityeye_ingest_readings_accepted_total",
                   "Readings validated and stored on Kafka readings.<kind>", ["kind"])
DEAD_LETTERED = Counter("cityeye_ingest_readings_deadlettered_total",
                        "Readings or messages refused and stored on readings.deadletter, by reason code", ["reason"])
KAFKA_RETRIES = Counter("cityeye_ingest_kafka_retries_total", "Kafka sends the gateway had to retry")
UNACKED = Gauge("cityeye_ingest_unacked_messages", "MQTT messages received but not yet acknowledged")
GATEWAY_LATENCY = BatchHistogram("cityeye_ingest_latency_seconds",
                                 "MQTT receipt of a message to Kafka's acknowledgement of its records (stage gateway)")


def observe_batch(messages: Sequence[Inbound], outcomes: Sequence[Reading | DeadLetter], now: float,
                  unacked: int) -> None:
    """Count one batch the gateway has stored on Kafka and acknowledged (once per batch, not per reading)."""
    MESSAGES.inc(len(messages))
    UNACKED.set(unacked)
    GATEWAY_LATENCY.observe_since(now, [msg.received_at for msg in messages])
    kinds = collections.Counter(o.kind for o in outcomes if isinstance(o, Reading))
    for kind, n in kinds.items():
        ACCEPTED.labels(kind).inc(n)
    reasons = collections.Counter(reason_code(o.reason) for o in outcomes if isinstance(o, DeadLetter))
    for reason, n in reasons.items():
        DEAD_LETTERED.labels(reason).inc(n)
