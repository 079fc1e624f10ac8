"""The dispatcher's Prometheus metrics (docs/metrics.md).

The notification metrics follow Alertmanager's (``alertmanager_notifications_total``,
``alertmanager_notifications_failed_total``, ``alertmanager_notification_latency_seconds``):
one attempt counts once in ``cityeye_notifications_total``, a failed attempt
once more in ``cityeye_notifications_failed_total`` with the reason.
"""

from __future__ import annotations

import time
from typing import Any, Sequence

from prometheus_client import Counter, Histogram

from alerts.notification import Notifier
from cityeye.metrics import LATENCY_BUCKETS

__all__ = ["NOTIFICATIONS", "NOTIFICATIONS_FAILED", "NOTIFICATION_LATENCY", "DELIVERY_LATENCY",
           "NOTIFICATIONS_DEAD_LETTERED", "EVENTS_APPLIED", "DISPATCH_LATENCY", "integration_of",
           "observe_applied"]

_LABELS = ["receiver", "integration"]
NOTIFICATIONS = Counter("cityeye_notifications_total", "Notification attempts, by receiver", _LABELS)
NOTIFICATIONS_FAILED = Counter("cityeye_notifications_failed_total",
                               "Failed notification attempts, by receiver and reason "
                               "(retryable, permanent, timeout, error)", [*_LABELS, "reason"])
NOTIFICATION_LATENCY = Histogram("cityeye_notification_latency_seconds",
                                 "Time one notification attempt took (the receiver's answer)", _LABELS,
                                 buckets=LATENCY_BUCKETS)
DELIVERY_LATENCY = Histogram("cityeye_notification_delivery_latency_seconds",
                             "A notification's creation to its successful delivery (retries included)", _LABELS,
                             buckets=LATENCY_BUCKETS)
NOTIFICATIONS_DEAD_LETTERED = Counter("cityeye_notifications_deadlettered_total",
                                      "Notifications given up on and dead-lettered", _LABELS)
EVENTS_APPLIED = Counter("cityeye_dispatcher_events_total",
                         "Alert events and officer actions the dispatcher applied to its partitions' state")
DISPATCH_LATENCY = Histogram("cityeye_dispatcher_latency_seconds",
                             "An alert event's Kafka timestamp (the worker's send) or an action's to the end of "
                             "the transaction applying it (stage dispatcher)", buckets=LATENCY_BUCKETS)


def observe_applied(records: Sequence[Any], now: float | None = None) -> None:
    """Count a batch of records applied at ``now`` (wall-clock seconds), and their latency."""
    now = time.time() if now is None else now
    EVENTS_APPLIED.inc(len(records))
    for rec in records:
        stamp = getattr(rec, "timestamp", None)  # milliseconds (CreateTime); records built in tests may have none
        if stamp:
            DISPATCH_LATENCY.observe(max(0.0, now - stamp / 1000))


def integration_of(notifier: Notifier | None) -> str:
    """The channel of a notifier (``webhook``, ``cap``, ``mqtt``, ``email``) from its class name."""
    if notifier is None:
        return "unknown"
    return type(notifier).__name__.removesuffix("Notifier").lower() or "notifier"
