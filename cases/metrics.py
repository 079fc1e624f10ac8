"""The cases service's Prometheus metrics (docs/metrics.md).

Counted after the database transaction that did the work has committed, so a
rolled-back action is never counted.
"""

from __future__ import annotations

from prometheus_client import Counter

__all__ = ["ALERT_OUTCOMES", "ACTIONS_DONE", "TIMER_EVENTS", "NOTICE_OUTCOMES"]

ALERT_OUTCOMES = Counter("cityeye_case_alert_events_total",
                      "Alert events the cases service read, by what they did (filed, linked, ignored, unreadable…)",
                      ["outcome"])
ACTIONS_DONE = Counter("cityeye_case_actions_total",
                       "Case workflow actions done through the API (file, dispatch, accept, return, handle, verify…)",
                       ["action"])
TIMER_EVENTS = Counter("cityeye_case_timer_events_total",
                      "SLA timer events: reminders before a deadline and escalations of overdue cases", ["event"])
NOTICE_OUTCOMES = Counter("cityeye_case_notices_total",
                       "Case notices to duty desks (reminders, escalations) by receiver and outcome "
                       "(sent, retried, dropped)", ["receiver", "outcome"])
