"""Escalation and reminders for unacknowledged orange/red alerts.

Per aggregation group: when a notifiable alert at an escalating severity
(``timings.escalate_severities``, default orange and red) has stayed
unacknowledged for ``escalate_after``, the group escalates one level: an
``escalation`` notification goes to the next receiver in the route's
``escalation`` chain of the alert's first matching route (level 1 → first, level 2, after twice the delay →
second, …; an empty chain escalates to the route's own receiver). Once
escalated, a ``reminder`` goes every ``reminder_every`` to the route's
receiver and to everyone escalated to. Acknowledging (or resolving,
silencing) every such alert stops escalation and reminders, and resets
the level, so a later unacknowledged alert starts again from level 1.
"""

from __future__ import annotations

from alerts.config import TimingsConfig
from alerts.pipeline.grouping import AggregationGroup, make_notification
from alerts.model import Alert
from alerts.notification import Notification
from alerts.pipeline.routing import Route

__all__ = ["Escalator"]


class Escalator:
    def __init__(self, timings: TimingsConfig) -> None:
        self.after = timings.escalate_after
        self.every = timings.reminder_every

    @staticmethod
    def waiting(group: AggregationGroup, alerts: list[Alert]) -> list[Alert]:
        """Alerts of ``group`` that need someone's acknowledgement.

        An alert in several groups (``continue`` routes) escalates through
        its first one only, so no one is escalated to twice.
        """
        return [a for a in alerts if a.active and a.notifiable and a.escalating_since is not None
                and not a.acknowledged_by and a.groups[:1] == [group.key]]

    def next_due(self, group: AggregationGroup, alerts: list[Alert]) -> float | None:
        """When :meth:`check` will next have something to do (None: nothing pending)."""
        waiting = self.waiting(group, alerts)
        if not waiting:
            return None
        since = min(a.escalating_since for a in waiting)  # type: ignore[type-var]
        times = [since + self.after * (group.escalation_level + 1)]
        if group.escalation_level and group.last_reminder_at is not None:
            times.append(group.last_reminder_at + self.every)
        return min(times)

    def check(self, group: AggregationGroup, route: Route, alerts: list[Alert], now: float) -> list[Notification]:
        """Escalations and reminders due for ``group`` now."""
        waiting = self.waiting(group, alerts)
        if not waiting:
            group.escalation_level, group.escalated_to, group.last_reminder_at = 0, [], None
            return []
        chain = route.escalation or [route.receiver]
        since = min(a.escalating_since for a in waiting)  # type: ignore[type-var]
        target = min(len(chain), int((now - since) // self.after)) if self.after > 0 else len(chain)
        out: list[Notification] = []
        minutes = (now - since) / 60
        while group.escalation_level < target:
            receiver = chain[group.escalation_level]
            group.escalation_level += 1
            if receiver not in group.escalated_to:
                group.escalated_to.append(receiver)
            summary = (f"[ESCALATION {group.escalation_level}] {len(waiting)} alert(s) unacknowledged for "
                       f"{minutes:.0f} min: " + "; ".join(f"{a.severity} {a.sensor_id} {a.rule}" for a in waiting[:5]))
            out.append(make_notification(group, receiver, "escalation", waiting, now, summary))
            group.last_reminder_at = now
        if not out and group.escalation_level and group.last_reminder_at is not None \
                and now - group.last_reminder_at >= self.every:
            summary = (f"[REMINDER] {len(waiting)} alert(s) still unacknowledged after {minutes:.0f} min: "
                       + "; ".join(f"{a.severity} {a.sensor_id} {a.rule}" for a in waiting[:5]))
            for receiver in dict.fromkeys([route.receiver, *group.escalated_to]):
                out.append(make_notification(group, receiver, "reminder", waiting, now, summary))
            group.last_reminder_at = now
        return out
