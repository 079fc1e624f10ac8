"""Aggregation groups: many alerts, one notification per receiver.

As Alertmanager's dispatcher: every route an alert matches puts it in the
aggregation group ``route + group_by labels`` (default district + kind).
A new group waits ``group_wait`` before its first notification, so twenty
gauges flooding in one district become one notification with a summary.
After that, a change (alert added, resolved, severity changed, leaving a
silence) is sent at most every ``group_interval``, and an unchanged group
with firing alerts is re-sent every ``repeat_interval``. Alerts that are
silenced, inhibited or flapping are left out; a resolved alert is reported
once (only if its firing was notified) and then leaves the group.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from alerts.model import Alert
from alerts.notification import Notification
from alerts.pipeline.routing import Route
from cityeye.contracts import SEVERITIES

__all__ = ["AggregationGroup", "flush_group", "make_notification", "summarize"]

#: earlier notification ids kept per group (CAP ``references``)
_MAX_REFERENCES = 20


@dataclass
class AggregationGroup:
    """Persistent state of one aggregation group (one route, one receiver)."""

    key: str
    route_id: str
    receiver: str
    labels: dict[str, str]
    created_at: float
    alert_ids: list[str] = field(default_factory=list)
    next_flush_at: float | None = None
    last_flush_at: float | None = None
    last_notified_at: float | None = None
    #: fingerprint of the content last notified ("" = nothing yet)
    last_sent: str = ""
    #: alert ids notified as firing in the last notification
    notified_firing: list[str] = field(default_factory=list)
    #: notification counter of this group (all receivers); the Notification version
    seq: int = 0
    sent_ids: list[str] = field(default_factory=list)
    #: escalation: level reached, receivers escalated to, last reminder time
    escalation_level: int = 0
    escalated_to: list[str] = field(default_factory=list)
    last_reminder_at: float | None = None

    def add(self, alert_id: str, route: Route, now: float) -> None:
        """``alert_id`` joined or changed: schedule the next flush."""
        if alert_id not in self.alert_ids:
            self.alert_ids.append(alert_id)
        self.changed(route, now)

    def changed(self, route: Route, now: float) -> None:
        if self.last_flush_at is None:
            due = self.created_at + route.group_wait
        else:
            due = max(now, self.last_flush_at + route.group_interval)
        self.next_flush_at = due if self.next_flush_at is None else min(self.next_flush_at, due)

    def due(self, route: Route, now: float) -> bool:
        if self.next_flush_at is not None and self.next_flush_at <= now:
            return True
        return bool(self.notified_firing) and self.last_notified_at is not None and (
            now - self.last_notified_at >= route.repeat_interval)

    def to_dict(self) -> dict[str, Any]:
        """The group as JSON-able data (``asdict``'s result, built without its deep copy: a tick saves groups)."""
        return {name: (list(v) if isinstance(v, list) else dict(v) if isinstance(v, dict) else v)
                for name in _GROUP_FIELDS for v in (getattr(self, name),)}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "AggregationGroup":
        return cls(**{k: v for k, v in d.items() if k in cls.__dataclass_fields__})


_GROUP_FIELDS = tuple(AggregationGroup.__dataclass_fields__)


def summarize(labels: dict[str, str], firing: list[Alert], resolved: list[Alert]) -> str:
    """One line a duty officer can read on a phone, e.g. ``10 firing (red 2, orange 8) …``."""
    where = ", ".join(f"{k}={v}" for k, v in labels.items() if v) or "all"
    if not firing:
        return f"[RESOLVED] {where}: {len(resolved)} alert(s) resolved"
    counts = Counter(a.severity for a in firing)
    by_sev = ", ".join(f"{s} {counts[s]}" for s in reversed(SEVERITIES) if counts[s])
    sensors = sorted({a.sensor_name or a.sensor_id for a in firing})
    shown = ", ".join(sensors[:5]) + (f" (+{len(sensors) - 5} more)" if len(sensors) > 5 else "")
    text = f"[FIRING:{len(firing)}] {where}: {len(firing)} firing ({by_sev}); sensors: {shown}"
    if resolved:
        text += f"; {len(resolved)} resolved"
    return text


def make_notification(group: AggregationGroup, receiver: str, reason: str, alerts: list[Alert], now: float,
                      summary: str) -> Notification:
    """A new notification of ``group`` for ``receiver`` (bumps the group's counter)."""
    group.seq += 1
    status = "firing" if any(a.active for a in alerts) else "resolved"
    n = Notification(
        receiver=receiver, group_key=group.key, group_labels=dict(group.labels), version=group.seq,
        status=status, reason=reason, alerts=[a.snapshot() for a in alerts], created_at=now,
        summary=summary, previous_ids=list(group.sent_ids[-_MAX_REFERENCES:]),
    )
    group.sent_ids.append(n.id)
    del group.sent_ids[:-_MAX_REFERENCES]
    return n


def _fingerprint(firing: list[Alert], resolved: list[Alert]) -> str:
    return "|".join(sorted(f"{a.alert_id}:{a.state}:{a.severity}" for a in firing + resolved))


def flush_group(group: AggregationGroup, route: Route, alerts: list[Alert], now: float) -> Notification | None:
    """Flush a due group: the notification to send, if any; resolved alerts leave the group.

    ``alerts`` are the group's alerts (``group.alert_ids`` resolved to state).
    """
    firing = [a for a in alerts if a.active and a.notifiable]
    resolved = [a for a in alerts if not a.active and a.alert_id in group.notified_firing]
    fingerprint = _fingerprint(firing, resolved)
    note: Notification | None = None
    if firing or resolved:
        if fingerprint != group.last_sent:
            reason = "new" if not group.last_sent else ("update" if firing else "resolved")
        elif firing and group.last_notified_at is not None and now - group.last_notified_at >= route.repeat_interval:
            reason = "repeat"
        else:
            reason = ""
        if reason:
            note = make_notification(group, group.receiver, reason, firing + resolved, now,
                                     summarize(group.labels, firing, resolved))
            group.last_notified_at = now
            group.last_sent = _fingerprint(firing, [])
            group.notified_firing = [a.alert_id for a in firing]
    elif group.notified_firing and not firing:
        # everything that was notified is now silenced/inhibited/flapping: nothing to say
        group.last_sent = ""
        group.notified_firing = []
    gone = {a.alert_id for a in alerts if not a.active}
    group.alert_ids = [i for i in group.alert_ids if i not in gone]
    group.notified_firing = [i for i in group.notified_firing if i not in gone]
    group.next_flush_at = None
    group.last_flush_at = now
    return note
