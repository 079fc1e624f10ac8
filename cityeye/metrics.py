"""Prometheus metrics of a CityEye process: the exposition server and the kernel's own metrics.

Each process (gateway, worker, sinks, dispatcher, cases) serves its metrics at
``http://<metrics.host>:<metrics.port>/metrics`` once the command calls
:func:`start_metrics` (``metrics.port: 0``, the default, serves nothing).
The metric objects live in one module per room (``ingest/metrics.py``,
``streams/metrics.py``, ``alerts/runtime/metrics.py``,
``alerts/sinks/metrics.py``, ``cases/metrics.py``) on prometheus-client's default registry, and
this module holds what every room shares: the consumer lag of a Kafka
consumer group, named after kafka_exporter's ``kafka_consumergroup_lag``,
the latency buckets and :class:`BatchHistogram` (a histogram observed a
batch of readings at a time). Every metric is listed in docs/metrics.md.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from typing import Any, Callable, Iterable

import numpy as np
from prometheus_client import REGISTRY, CollectorRegistry, Gauge, Info, start_http_server
from prometheus_client.core import HistogramMetricFamily
from prometheus_client.registry import Collector
from prometheus_client.utils import floatToGoString

from cityeye.config import MetricsSettings

__all__ = [
    "CONSUMERGROUP_LAG",
    "CONSUMERGROUP_CURRENT_OFFSET",
    "LATENCY_BUCKETS",
    "PROCESS_INFO",
    "serve_metrics",
    "start_metrics",
    "ConsumerLag",
    "report_lag",
    "BatchHistogram",
]

log = logging.getLogger(__name__)

#: seconds; from a few milliseconds (one stage) to minutes (a backlog)
LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0)

CONSUMERGROUP_LAG = Gauge(
    "cityeye_consumergroup_lag",
    "Records in a partition not yet consumed by this process's member of the group (high watermark - position)",
    ["group", "topic", "partition"])
CONSUMERGROUP_CURRENT_OFFSET = Gauge(
    "cityeye_consumergroup_current_offset",
    "The group's consume position in a partition owned by this process (next offset to read)",
    ["group", "topic", "partition"])
PROCESS_INFO = Info("cityeye_process", "Which CityEye process serves these metrics")


class BatchHistogram(Collector):
    """A label-less Prometheus histogram observed a batch at a time.

    prometheus-client's ``Histogram.observe`` costs about a microsecond per
    value (a lock and a walk over the buckets); a stage that handles
    tens of thousands of readings a second observes each batch's values at
    once here instead (one ``numpy.searchsorted``), and exposes the same
    ``_bucket{le}``, ``_sum`` and ``_count`` series. Registered on
    ``registry`` (the default one) at construction.
    """

    def __init__(self, name: str, documentation: str, buckets: Iterable[float] = LATENCY_BUCKETS,
                 registry: CollectorRegistry = REGISTRY) -> None:
        self.name, self.documentation = name, documentation
        self.bounds = np.array(sorted(buckets), dtype=float)
        self._counts = np.zeros(len(self.bounds) + 1, dtype=np.int64)  # the last one: above every bound
        self._sum = 0.0
        self._lock = threading.Lock()
        registry.register(self)

    def observe_since(self, now: float, times: Iterable[float]) -> None:
        """Observe ``now - t`` for every ``t`` of ``times`` (0 for a time ahead of ``now``)."""
        arr = now - np.fromiter(times, dtype=float)
        self.observe_many(np.maximum(arr, 0.0, out=arr))

    def observe_many(self, values: Iterable[float] | np.ndarray) -> None:
        """Observe every value of ``values`` (seconds, or the histogram's unit)."""
        arr = values if isinstance(values, np.ndarray) else np.fromiter(values, dtype=float)
        if not arr.size:
            return
        counts = np.bincount(np.searchsorted(self.bounds, arr, side="left"), minlength=len(self._counts))
        total = float(arr.sum())
        with self._lock:
            self._counts += counts
            self._sum += total

    def observe(self, value: float) -> None:
        self.observe_many((value,))

    def collect(self) -> Iterable[HistogramMetricFamily]:
        with self._lock:
            cumulative, total = np.cumsum(self._counts), self._sum
        les = [*(floatToGoString(b) for b in self.bounds), "+Inf"]
        family = HistogramMetricFamily(self.name, self.documentation)
        family.add_metric([], list(zip(les, (float(c) for c in cumulative))), total)
        yield family

    def describe(self) -> Iterable[HistogramMetricFamily]:
        yield HistogramMetricFamily(self.name, self.documentation)


def serve_metrics(host: str, port: int) -> int:
    """Serve the default registry at ``http://host:port/metrics`` in a daemon thread; returns the bound port.

    ``port`` 0 binds any free port (the embedded stack and the tests).
    Raises :class:`OSError` when the port is taken.
    """
    server, _thread = start_http_server(port, addr=host)
    return int(server.server_port)


def start_metrics(settings: MetricsSettings, process: str) -> int | None:
    """Start this process's metrics server as configured; ``None`` when ``metrics.port`` is 0."""
    PROCESS_INFO.info({"process": process})
    if settings.port == 0:
        return None
    port = serve_metrics(settings.host, settings.port)
    log.info("%s metrics on http://%s:%d/metrics", process, settings.host, port)
    return port


class ConsumerLag:
    """Keeps ``cityeye_consumergroup_lag`` / ``_current_offset`` of one group's partitions in this process.

    :meth:`update` takes ``(topic, partition, high watermark, position)`` of
    every partition owned now; partitions no longer owned lose their series
    (their new owner reports them), so a sum over processes is the group's lag.
    """

    def __init__(self, group: str) -> None:
        self.group = group
        self._owned: set[tuple[str, str]] = set()

    def update(self, positions: Iterable[tuple[str, int, int | None, int | None]]) -> None:
        owned: set[tuple[str, str]] = set()
        for topic, partition, highwater, position in positions:
            if highwater is None or position is None:
                continue
            key = (topic, str(partition))
            owned.add(key)
            CONSUMERGROUP_LAG.labels(self.group, *key).set(max(0, highwater - position))
            CONSUMERGROUP_CURRENT_OFFSET.labels(self.group, *key).set(position)
        for key in self._owned - owned:
            for gauge in (CONSUMERGROUP_LAG, CONSUMERGROUP_CURRENT_OFFSET):
                try:
                    gauge.remove(self.group, *key)
                except KeyError:
                    pass
        self._owned = owned


async def report_lag(consumer: Any, lag: ConsumerLag, topics: set[str] | None = None, timeout_s: float = 1.0,
                     position: Callable[[Any], int | None] | None = None) -> None:
    """Set ``lag``'s gauges from a consumer's owned partitions (of ``topics``, default all).

    ``consumer`` has ``assignment()`` and ``highwater(tp)`` (an aiokafka
    consumer, a Faust app's consumer); the position of a partition is
    ``position(tp)`` when given (``None``: unknown yet), else the
    consumer's awaitable ``position(tp)``, waited for at most ``timeout_s``.
    """
    positions = []
    for tp in consumer.assignment():
        if topics is not None and tp.topic not in topics:
            continue
        highwater = consumer.highwater(tp)
        if highwater is None:  # nothing fetched from it yet
            continue
        if position is not None:
            at = position(tp)
        else:
            try:
                at = await asyncio.wait_for(consumer.position(tp), timeout_s)
            except Exception as exc:  # revoked or being reset meanwhile: reported next time
                log.debug("no position for %s[%d]: %r", tp.topic, tp.partition, exc)
                continue
        positions.append((tp.topic, tp.partition, highwater, at))
    lag.update(positions)
