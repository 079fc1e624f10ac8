"""Alert events on a Kafka producer of their own.

aiokafka keeps one produce request in flight per broker and producer. On the
Faust app's producer an alert event therefore queued behind whatever that
producer had taken before: snapshot changelog records (several KB each, a
burst of them after every wave of alert changes) and dead letters
(docs/streams.md, "Where the 5 k/s alert latency goes"). :class:`AlertSender`
sends ``alerts.events`` on a producer that carries nothing else, without
lingering, and waits until the broker has every event of a call: the
snapshots written after them may include the readings behind them.

A call's events go out in one produce request: its batches hold up to
:data:`BATCH_BYTES` per partition. With aiokafka's default 16 KiB a full
batch made the next event wait until the broker had taken it, so a call
holding a burst's events (the 950 flatline firings within a second of
``bench/bench_latency.py``, ~430 bytes each, come in calls of up to a few
hundred when the worker is behind) waited a broker round trip per 16 KiB
of a partition's events before its last events were even stamped
(docs/streams.md, "A burst of alert events in one produce request").

A call logs one INFO line (its events counted by state and rule, :func:`sent_summary`);
each event is logged at DEBUG: a line per event cost the burst ~950 log records.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections import Counter
from typing import Any, Iterable

from aiokafka import AIOKafkaProducer

from cityeye.config import KafkaSettings
from cityeye.contracts import TOPIC_ALERTS, AlertEvent
from cityeye.kafka import make_producer
from streams import metrics

__all__ = ["AlertSender", "BATCH_BYTES", "sent_summary", "event_json"]

log = logging.getLogger(__name__)

#: the most bytes of one partition's alert events in one produce request (a burst of ~1,000 events fits)
BATCH_BYTES = 512 * 1024


def event_json(event: AlertEvent) -> bytes:
    """``contracts.to_json(event)``, the same bytes, without ``dataclasses.asdict``'s deep copy (~0.1 ms an
    event: half the CPU of a tick in which a thousand sensors go stale, their snapshots aside).

    An event's ``__dict__`` holds its fields, in their order, and nothing else (a plain dataclass).
    """
    return json.dumps(event.__dict__, separators=(",", ":"), ensure_ascii=False, allow_nan=False).encode(
        "utf-8", errors="backslashreplace")


def sent_summary(events: list[AlertEvent]) -> str:
    """One line for a call's events: how many, by state and by rule (each event is logged at DEBUG).

    Examples
    --------
    >>> ev = AlertEvent(alert_id="a1", sensor_id="wl-1", kind="water_level", district="d", rule="water_level.flatline",
    ...                 severity="blue", state="firing", started_at=0.0, updated_at=1.0, value=3.0, threshold=60.0,
    ...                 message="stuck")
    >>> sent_summary([ev, ev])
    '2 alert event(s) sent: firing 2; water_level.flatline 2'
    """
    states = Counter(ev.state for ev in events)
    rules = Counter(ev.rule for ev in events)
    return (f"{len(events)} alert event(s) sent: " + ", ".join(f"{k} {n}" for k, n in states.most_common())
            + "; " + ", ".join(f"{k} {n}" for k, n in rules.most_common()))


class AlertSender:
    """Sends alert events to ``alerts.events`` keyed by alert id and waits for the broker's acknowledgements.

    Parameters
    ----------
    kafka : KafkaSettings
        The cluster (its producer settings: acks=all, idempotence where the broker has it).
    topic : str
        The alert events topic.
    """

    def __init__(self, kafka: KafkaSettings, topic: str = TOPIC_ALERTS) -> None:
        self.kafka = kafka
        self.topic = topic
        self._producer: AIOKafkaProducer | None = None
        self._starting = asyncio.Lock()

    async def send(self, events: Iterable[AlertEvent]) -> None:
        """Send ``events`` in order and return once the broker acknowledged all of them."""
        events = list(events)
        if not events:
            return
        producer = await self._started()
        pending: list[Any] = []
        each = log.isEnabledFor(logging.DEBUG)
        for ev in events:
            pending.append(await producer.send(self.topic, key=ev.alert_id.encode(), value=event_json(ev)))
            if each:
                log.debug("alert %s %s %s %s value=%s (%s)", ev.state, ev.severity, ev.sensor_id, ev.rule, ev.value,
                          ev.alert_id)
        await asyncio.gather(*pending)
        metrics.count_alert_events(events)
        log.info("%s", sent_summary(events))

    async def close(self) -> None:
        """Flush and stop the producer (a later :meth:`send` starts a new one)."""
        producer, self._producer = self._producer, None
        if producer is not None:
            await producer.stop()

    async def _started(self) -> AIOKafkaProducer:
        async with self._starting:
            if self._producer is None:
                # linger 0: an event goes out at once (events gather while a request is in flight anyway)
                producer = make_producer(self.kafka, "streams-alerts", linger_ms=0, max_batch_size=BATCH_BYTES)
                await producer.start()
                self._producer = producer
            return self._producer
