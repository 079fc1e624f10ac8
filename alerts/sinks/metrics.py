"""The sinks' Prometheus metrics (docs/metrics.md)."""

from __future__ import annotations

from prometheus_client import Counter

__all__ = ["SINK_WRITTEN", "SINK_DEAD_LETTERED", "SINK_FLUSH_FAILURES"]

SINK_WRITTEN = Counter("cityeye_sink_written_total", "Alert events a sink wrote (InfluxDB points, webhook posts)",
                       ["sink"])
SINK_DEAD_LETTERED = Counter("cityeye_sink_deadlettered_total", "Alert events a sink dead-lettered", ["sink"])
SINK_FLUSH_FAILURES = Counter("cityeye_sink_flush_failures_total",
                              "Sink flushes that failed and are retried (the sink's server down or refusing)",
                              ["sink"])
