"""Alert state: one active alert per sensor + rule, with its timeline.

An :class:`Alert` lives from the first firing event of an episode until it
is resolved (after the keep-firing-for delay). Re-fires, escalations and
de-escalations update the same alert. ``status`` is what a duty officer
sees: ``active``, ``acknowledged``, ``silenced``, ``inhibited``,
``flapping`` or ``resolved`` (in that order of precedence, resolved first).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

from alerts.notification import AlertSnapshot
from cityeye.contracts import SEVERITY_RANK, AlertEvent

__all__ = ["STATUSES", "TimelineEntry", "Alert", "alert_key", "MAX_TIMELINE"]

STATUSES = ("active", "acknowledged", "silenced", "inhibited", "flapping", "resolved")
#: timeline entries kept on the alert (the full history is in InfluxDB)
MAX_TIMELINE = 500


def alert_key(sensor_id: str, rule: str) -> str:
    """The identity of "the active alert of this sensor for this rule"."""
    return f"{sensor_id}|{rule}"


@dataclass
class TimelineEntry:
    """One thing that happened to an alert."""

    ts: float
    #: raised, escalated, de-escalated, refired, resolve_pending, resolved, acknowledged,
    #: assigned, commented, silenced, unsilenced, inhibited, uninhibited, flapping,
    #: flapping_ended, notified
    action: str
    actor: str = "system"
    detail: str = ""
    receiver: str = ""
    attempt: int = 0
    status: str = ""


@dataclass
class Alert(AlertSnapshot):
    """Live state of one alert (sensor + rule episode).

    Extends the notification-facing :class:`AlertSnapshot` fields (``state``
    there is the episode's state, firing | resolved, not the officer-facing
    :attr:`status`) with the lifecycle's own bookkeeping.
    """

    labels: dict[str, str] = field(default_factory=dict)
    acknowledged_at: float | None = None
    #: when a pending resolve takes effect (keep-firing-for), or None
    resolve_at: float | None = None
    #: since when the alert has been at an escalating severity (orange/red), or None
    escalating_since: float | None = None
    #: recent observed states, 1 = firing, 0 = resolving (flapping detection)
    state_history: list[int] = field(default_factory=list)
    flapping: bool = False
    silenced_by: list[str] = field(default_factory=list)
    inhibited_by: list[str] = field(default_factory=list)
    #: aggregation groups the alert is in (one per matching route)
    groups: list[str] = field(default_factory=list)
    #: event ids already applied (at-least-once input, exactly-once effect)
    seen_events: list[str] = field(default_factory=list)
    timeline: list[TimelineEntry] = field(default_factory=list)

    @property
    def key(self) -> str:
        return alert_key(self.sensor_id, self.rule)

    @property
    def active(self) -> bool:
        return self.state == "firing"

    @property
    def status(self) -> str:
        if self.state == "resolved":
            return "resolved"
        if self.silenced_by:
            return "silenced"
        if self.inhibited_by:
            return "inhibited"
        if self.flapping:
            return "flapping"
        if self.acknowledged_by:
            return "acknowledged"
        return "active"

    @property
    def notifiable(self) -> bool:
        """Whether notifications may mention this alert now (recorded either way)."""
        return not (self.silenced_by or self.inhibited_by or self.flapping)

    @property
    def rank(self) -> int:
        return SEVERITY_RANK[self.severity]

    def label_set(self) -> dict[str, str]:
        """Labels used by matchers: the event's labels plus the alert's own fields."""
        out = dict(self.labels)
        out.update(
            alert_id=self.alert_id, sensor=self.sensor_id, sensor_id=self.sensor_id, kind=self.kind,
            district=self.district, rule=self.rule, severity=self.severity, state=self.state,
        )
        return out

    def record(self, ts: float, action: str, **kw: Any) -> TimelineEntry:
        entry = TimelineEntry(ts=ts, action=action, **kw)
        self.timeline.append(entry)
        if len(self.timeline) > MAX_TIMELINE:
            del self.timeline[: len(self.timeline) - MAX_TIMELINE]
        return entry

    def snapshot(self) -> AlertSnapshot:
        return AlertSnapshot(**{name: getattr(self, name) for name in _SNAPSHOT_FIELDS})

    @classmethod
    def from_event(cls, ev: AlertEvent) -> "Alert":
        return cls(
            alert_id=ev.alert_id, sensor_id=ev.sensor_id, kind=ev.kind, district=ev.district, rule=ev.rule,
            severity=ev.severity, state="firing", started_at=ev.started_at, updated_at=ev.updated_at,
            value=ev.value, threshold=ev.threshold, message=ev.message, labels=dict(ev.labels),
            sensor_name=str(ev.labels.get("sensor_name", "")),
        )

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def to_api(self, with_timeline: bool = False) -> dict[str, Any]:
        d = asdict(self)
        d.pop("seen_events")
        d.pop("state_history")
        d.pop("groups")
        if not with_timeline:
            d.pop("timeline")
        d["status"] = self.status
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "Alert":
        d = dict(d)
        d["timeline"] = [TimelineEntry(**t) for t in d.get("timeline", [])]
        known = cls.__dataclass_fields__
        return cls(**{k: v for k, v in d.items() if k in known})


_SNAPSHOT_FIELDS = tuple(AlertSnapshot.__dataclass_fields__)
