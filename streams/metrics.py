"""The stream worker's Prometheus metrics (docs/metrics.md)."""

from __future__ import annotations

import collections
import time
from typing import Any, Callable, Iterable, Sequence

from prometheus_client import Counter, Gauge, Histogram

from cityeye.contracts import AlertEvent, Reading
from cityeye.metrics import LATENCY_BUCKETS, BatchHistogram

__all__ = ["READINGS", "DEAD_LETTERED", "WORKER_LATENCY", "READING_AGE", "ALERT_EVENTS", "SNAPSHOT_WRITES",
           "BATCH_SECONDS", "INTAKE_LAG", "report_intake_lags", "ReadingsTally", "observe_readings",
           "count_alert_events", "monitor_position"]

READINGS = Counter("cityeye_worker_readings_total", "Readings the detectors processed", ["kind"])
DEAD_LETTERED = Counter("cityeye_worker_deadlettered_total",
                        "Messages the worker sent to readings.deadletter (invalid or processing failed)", ["reason"])
WORKER_LATENCY = BatchHistogram("cityeye_worker_latency_seconds",
                                "Gateway receipt of a reading to the end of its detector batch (stage worker)")
READING_AGE = BatchHistogram("cityeye_reading_age_seconds",
                             "A reading's measurement time (ts) to the end of its detector batch",
                             buckets=(1, 5, 15, 60, 300, 900, 3600, 6 * 3600, 86400))
BATCH_SECONDS = Histogram("cityeye_worker_batch_seconds", "Time the detectors took for one batch of readings",
                          buckets=LATENCY_BUCKETS)
ALERT_EVENTS = Counter("cityeye_alert_events_total",
                       "Alert events the detectors sent to alerts.events", ["rule", "severity", "state"])
INTAKE_LAG = Gauge("cityeye_intake_lag_seconds",
                   "How long ago a gateway's intake was last known complete in this worker's partitions (the "
                   "no-data checks of its sensors wait meanwhile; streams/clocks.py)", ["gateway"])
SNAPSHOT_WRITES = Counter("cityeye_snapshot_writes_total", "Sensor detector-state snapshots written")


class ReadingsTally:
    """What a batch's metrics need of its processed readings: their kinds, receipt and measurement times.

    Kept as plain values (strings and floats, which the garbage collector
    does not track), not the readings: a batch of ~20 k readings held to its
    end survived the young collections (each reading and its values dict), so
    the collector ran ~90 times where ~4 do (issue #10, docs/streams.md session 12).
    """

    __slots__ = ("kinds", "received_at", "ts")

    def __init__(self) -> None:
        self.kinds: list[str] = []
        self.received_at: list[float] = []
        self.ts: list[float] = []

    def add(self, readings: Sequence[Reading]) -> None:
        """Count ``readings`` (a record's processed readings) in the batch."""
        self.kinds.extend([reading.kind for reading in readings])
        self.received_at.extend([reading.received_at for reading in readings])
        self.ts.extend([reading.ts for reading in readings])

    def observe(self, started: float, now: float | None = None) -> None:
        """Count the batch; ``started``/``now`` are wall-clock seconds (``time.time()``)."""
        now = time.time() if now is None else now
        kinds = collections.Counter(self.kinds)
        WORKER_LATENCY.observe_since(now, self.received_at)
        READING_AGE.observe_since(now, self.ts)
        for kind, n in kinds.items():
            READINGS.labels(kind).inc(n)
        if kinds:
            BATCH_SECONDS.observe(max(0.0, now - started))


def observe_readings(readings: Iterable[Reading], started: float, now: float | None = None) -> None:
    """Count one processed batch; ``started``/``now`` are wall-clock seconds (``time.time()``)."""
    tally = ReadingsTally()
    tally.add(list(readings))
    tally.observe(started, now)


def report_intake_lags(lags: dict[str, float], reported: set[str]) -> set[str]:
    """Set :data:`INTAKE_LAG` per gateway from ``lags``, removing the gateways ``reported`` last time that are
    not in it any more (silent too long, or their partitions gone); returns the gateways reported now."""
    for gateway, lag in lags.items():
        INTAKE_LAG.labels(gateway).set(max(0.0, lag))
    for gone in reported - lags.keys():
        INTAKE_LAG.remove(gone)
    return set(lags)


def monitor_position(app: Any) -> Callable[[Any], int | None]:
    """A partition's consume position from the Faust app's monitor: the last offset read + 1,
    else the last committed offset, else ``None`` (unknown yet)."""
    monitor = app.monitor

    def position(tp: Any) -> int | None:
        read = monitor.tp_read_offsets.get(tp)
        return read + 1 if read is not None else monitor.tp_committed_offsets.get(tp)

    return position


def count_alert_events(events: Iterable[AlertEvent]) -> None:
    for ev in events:
        ALERT_EVENTS.labels(ev.rule, ev.severity, ev.state).inc()

