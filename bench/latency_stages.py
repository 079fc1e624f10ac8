"""What ``bench_latency.py`` measures: each stage's latency, from the records' own fields.

A reading's ``ts`` is the wall time it was published at and an alert event's
``updated_at`` is the ``ts`` of the reading behind it, so each stage is a time
minus ``ts`` (the stages are described in bench_latency.py's docstring).

The gateway stages are not read live: a reader of ``readings.<kind>`` while
the pipeline runs cost the embedded Tansu about a fifth of its CPU (issue #10,
session 9), which the pipeline under test then lacked. The bench notes the
readings topic's end offsets before publishing (:func:`end_offsets_of`),
reads the range written since once the pipeline has stopped
(:func:`read_readings_back`, one read) and computes the stages from each
record's fields (:meth:`StageTimes.on_reading_record`). Only a stalled
gateway's start waits for the first reading live (:func:`first_reading`),
reading from the noted offsets until one comes.
"""

from __future__ import annotations

import math
import time

from aiohttp import web
from aiokafka.structs import ConsumerRecord, TopicPartition

from cityeye.config import KafkaSettings
from cityeye.consume import Batches, Offsets
from cityeye.contracts import AlertEvent, all_topics
from cityeye.kafka import fetched_end_offsets, make_consumer, read_ranges
from cityeye.reading_records import RejectedReading, readings_of

__all__ = ["STAGES", "StageTimes", "percentiles", "nearest_rank", "partitions_of", "end_offsets_of",
           "ranges_between", "read_readings_back", "first_reading"]

#: the stages, in pipeline order: (key, label)
STAGES = [("gateway", "publish -> gateway received"), ("kafka", "publish -> Kafka record"),
          ("event", "publish -> alert event produced"), ("event_read", "publish -> alert event read"),
          ("notify", "publish -> notification"), ("dispatch", "alert event produced -> notification")]


def nearest_rank(values: list[float], p: float) -> float:
    """The ``p``-th percentile of ``values`` by nearest rank (``inf`` for no values).

    Examples
    --------
    >>> nearest_rank([0.3, 0.1, 0.2], 50), nearest_rank([0.3, 0.1, 0.2], 99), nearest_rank([], 99)
    (0.2, 0.3, inf)
    """
    if not values:
        return math.inf
    xs = sorted(values)
    return xs[min(len(xs) - 1, max(0, math.ceil(p / 100 * len(xs)) - 1))]


def percentiles(values: list[float]) -> str:
    """``p50 / p99 / max`` in milliseconds (nearest rank)."""
    if not values:
        return "no samples"
    return (f"p50 {nearest_rank(values, 50) * 1000:7.1f} ms   p99 {nearest_rank(values, 99) * 1000:7.1f} ms   "
            f"max {max(values) * 1000:7.1f} ms   (n={len(values)})")


def partitions_of(topic: str) -> list[TopicPartition]:
    """Every partition of one of the project's topics (:func:`cityeye.contracts.all_topics`)."""
    return [TopicPartition(topic, p) for p in range(all_topics()[topic])]


async def end_offsets_of(kafka: KafkaSettings, topic: str) -> Offsets:
    """Each partition's end offset of ``topic`` (from Fetch high watermarks: Tansu's ListOffsets counts batches)."""
    return await fetched_end_offsets(kafka, partitions_of(topic))


def ranges_between(before: Offsets, after: Offsets) -> dict[tuple[str, int], tuple[int, int]]:
    """``{(topic, partition): (start, end)}`` of what was written between two end-offset readings.

    Examples
    --------
    >>> a, b = TopicPartition("t", 0), TopicPartition("t", 1)
    >>> ranges_between({a: 3, b: 5}, {a: 10, b: 5})
    {('t', 0): (3, 10)}
    """
    return {(tp.topic, tp.partition): (before.get(tp, 0), end) for tp, end in after.items() if end > before.get(tp, 0)}


async def read_readings_back(kafka: KafkaSettings, topic: str, before: Offsets, stages: "StageTimes",
                             timeout: float = 300.0) -> int:
    """Hand every record written to ``topic`` since the end offsets ``before`` to ``stages``; the records read."""
    ranges = ranges_between(before, await end_offsets_of(kafka, topic))
    return await read_ranges(kafka, ranges, stages.on_reading_record, give_up_after_idle=None, timeout=timeout)


async def first_reading(kafka: KafkaSettings, topic: str, before: Offsets) -> float:
    """Wait until a reading is on ``topic`` past the end offsets ``before``; when it was seen (wall time).

    Intake progress records (a gateway's, on the same partitions) do not count: they come whether or not
    anything is published. Its reader stops as soon as the first reading is there.
    """
    consumer = make_consumer(kafka, group=None)
    await consumer.start()
    try:
        consumer.assign(list(before))
        for tp, offset in before.items():
            consumer.seek(tp, offset)
        while True:
            batches = await consumer.getmany(timeout_ms=200, max_records=500)
            if any(readings_of(rec.value, rec.key, rec.headers) for records in batches.values() for rec in records):
                return time.time()
    finally:
        await consumer.stop()


class StageTimes:
    """Latencies per stage (seconds after the reading's ``ts``) of what was published after ``started``.

    Parameters
    ----------
    stale_after : float
        The stale rule's limit (s): a stale firing is true in the data where the gauge had published
        nothing for this long before it.
    """

    def __init__(self, stale_after: float) -> None:
        self.stale_after = stale_after
        self.started = math.inf
        self.times: dict[str, list[float]] = {key: [] for key, _ in STAGES}
        #: publish -> alert event read, per rule (the constant gauges' flatline firings come as one burst,
        #: the crossing gauges' warnings and resolves as a steady trickle)
        self.read_by_rule: dict[str, list[float]] = {}
        #: stale (no-data) firings read, the whole run: (sensor, when it became stale)
        self.stale: list[tuple[str, float]] = []
        #: every reading's ts per gauge, as published (to tell a publisher's own gap from the pipeline's delay)
        self.published_ts: dict[str, list[float]] = {}
        #: (alert id, updated_at) -> when the worker produced that alert event (its record's timestamp)
        self._produced: dict[tuple[str, float], float] = {}
        #: (alert id, updated_at) of each notification's latest alert -> when the webhook received it
        self._notified: list[tuple[tuple[str, float], float]] = []

    def on_reading_record(self, rec: ConsumerRecord) -> None:
        """A ``readings.<kind>`` record, read back after the run: its readings' gateway and Kafka stages."""
        for item in readings_of(rec.value, rec.key, rec.headers):
            if type(item) is RejectedReading:
                continue
            self.published_ts.setdefault(item.sensor_id, []).append(item.ts)
            if item.ts > self.started:
                self.times["gateway"].append(item.received_at - item.ts)
                self.times["kafka"].append(rec.timestamp / 1000 - item.ts)

    def on_events(self, batches: Batches) -> None:
        """Alert events read live on ``alerts.events``."""
        at = time.time()
        for records in batches.values():
            for rec in records:
                event = AlertEvent.from_json(rec.value)
                if event.rule.endswith(".stale") and event.state == "firing":
                    self.stale.append((event.sensor_id, event.started_at))
                if not event.rule.endswith(".stale") and event.updated_at > self.started:
                    self.times["event"].append(rec.timestamp / 1000 - event.updated_at)
                    self.times["event_read"].append(at - event.updated_at)
                    self.read_by_rule.setdefault(event.rule, []).append(at - event.updated_at)
                    self._produced[(event.alert_id, event.updated_at)] = rec.timestamp / 1000

    async def on_hook(self, request: web.Request) -> web.Response:
        """A notification at the bench's webhook."""
        body = await request.json()
        at = time.time()
        alerts = [a for a in body.get("alerts", []) if not a.get("rule", "").endswith(".stale")]
        if alerts and max(a["updated_at"] for a in alerts) > self.started:
            latest = max(alerts, key=lambda a: a["updated_at"])
            self.times["notify"].append(at - latest["updated_at"])
            self._notified.append(((latest["alert_id"], latest["updated_at"]), at))
        return web.Response(status=200)

    def stale_in_the_data(self) -> int:
        """The stale firings at which the gauge itself had published nothing for the stale limit (a starved
        publisher: true in the data); the others were the pipeline's (the gauge's readings were late)."""
        n = 0
        for sid, became_stale in self.stale:
            last_seen = became_stale - self.stale_after
            if not any(last_seen + 1e-3 < ts < became_stale for ts in self.published_ts.get(sid, ())):
                n += 1
        return n

    def match_dispatch(self) -> None:
        """The dispatcher's part (router hop, dispatcher, delivery): each notification's arrival minus the
        production of its latest alert event (matched once every event was read)."""
        self.times["dispatch"] = [at - self._produced[key] for key, at in self._notified if key in self._produced]
