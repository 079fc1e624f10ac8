"""The one alert shape: live state of one active alert per sensor + rule, and its views.

An :class:`Alert` lives from the first firing event of an episode until it
is resolved (after the keep-firing-for delay). Re-fires, escalations and
de-escalations update the same alert. ``status`` is what a duty officer
sees: ``active``, ``acknowledged``, ``silenced``, ``inhibited``,
``flapping`` or ``resolved`` (in that order of precedence, resolved first).

:class:`Alert` is the only class that declares an alert's fields. What
others see is derived from it: the HTTP API all but the bookkeeping
(:meth:`Alert.to_api`), a notification a frozen :class:`AlertSnapshot` of
the :data:`NOTIFIED_FIELDS` (:meth:`Alert.snapshot`), generated from
:class:`Alert` with its types and defaults, in that order — the order of
the alert objects in webhook, MQTT and outbox JSON.
"""

from __future__ import annotations

from dataclasses import MISSING, asdict, dataclass, field, fields, make_dataclass
from typing import Any

from cityeye.contracts import SEVERITY_RANK, AlertEvent

__all__ = ["STATUSES", "TimelineEntry", "Alert", "AlertSnapshot", "NOTIFIED_FIELDS", "LABELLED_FIELDS", "alert_key",
           "MAX_TIMELINE", "history_record"]

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
class Alert:
    """Live state of one alert (sensor + rule episode)."""

    # -- the episode, as the stream worker's events (alerts.events) tell it
    alert_id: str
    sensor_id: str
    kind: str
    district: str
    rule: str
    severity: str
    #: the episode's state, firing | resolved (the officer-facing one is :attr:`status`)
    state: str
    started_at: float
    updated_at: float
    value: float | None
    threshold: float | None
    message: str
    # -- the sensor: its name as the event's ``sensor_name`` label gives it, its position from the registry
    sensor_name: str = ""
    lat: float | None = None
    lon: float | None = None
    # -- officers and the end of the episode
    acknowledged_by: str | None = None
    assignee: str | None = None
    ended_at: float | None = None
    # -- what the rule is and the sensor's vertical datum and unit, as the event's labels give them
    #: the rule's check type in the rule library (``warning_levels``, ``stale``...): the ``check_type`` label
    check_type: str = ""
    datum: str = ""
    unit: str = ""
    # -- the dispatcher's own bookkeeping (not in notifications)
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
        """The alert as a notification shows it: a frozen copy of the :data:`NOTIFIED_FIELDS`."""
        return AlertSnapshot(**{name: getattr(self, name) for name in NOTIFIED_FIELDS})

    @classmethod
    def from_event(cls, ev: AlertEvent) -> "Alert":
        """A new firing alert from the first event of its episode (the fields both have, by name).

        The sensor's name is the event's ``sensor_name`` label, which the
        stream worker sets from its registry (streams/sensor_engine.py), as
        are the :data:`LABELLED_FIELDS` (the rule's check type, the datum
        and unit).
        """
        told = {f.name: getattr(ev, f.name) for f in fields(ev) if f.name in cls.__dataclass_fields__}
        facts = {name: str(ev.labels.get(name, "")) for name in ("sensor_name", *LABELLED_FIELDS)}
        return cls(**{**told, "state": "firing", "labels": dict(ev.labels), **facts})

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


#: notified fields taken from the event's labels of the same name, added after the notification shape was
#: fixed: a notification's JSON has them only when set (stored rows and bodies without them read back unchanged)
LABELLED_FIELDS = ("check_type", "datum", "unit")

#: the fields of an :class:`Alert` a notification shows, in the order of its JSON
NOTIFIED_FIELDS = ("alert_id", "sensor_id", "kind", "district", "rule", "severity", "state", "started_at",
                   "updated_at", "value", "threshold", "message", "sensor_name", "lat", "lon", "acknowledged_by",
                   "assignee", "ended_at", *LABELLED_FIELDS)


def _view(name: str, names: tuple[str, ...], doc: str) -> type:
    """A frozen dataclass of the fields ``names`` of :class:`Alert`, with their types and defaults."""
    declared = {f.name: f for f in fields(Alert)}
    specs: list[Any] = []
    for n in names:
        f = declared[n]
        if f.default_factory is not MISSING:
            raise TypeError(f"{n}: a view holds copies of immutable values, not {f.default_factory.__name__}()")
        specs.append((n, f.type) if f.default is MISSING else (n, f.type, field(default=f.default)))
    return make_dataclass(name, specs, frozen=True, namespace={"__doc__": doc, "__module__": __name__})


#: one alert as a notification shows it: a frozen copy of the NOTIFIED_FIELDS of an Alert
AlertSnapshot = _view("AlertSnapshot", NOTIFIED_FIELDS,
                      "One alert as a notification shows it (a copy, not live state).")


def history_record(alert: Alert | None, action: str, ts: float, *, actor: str = "system", detail: str = "",
           receiver: str = "", attempt: int = 0, status: str = "", **labels: str) -> dict[str, Any]:
    """A history record of ``action`` on ``alert`` (or on ``labels`` when there is no alert).

    The pipeline puts these in the store's history outbox with the change
    that caused them; ``alerts/runtime/history.py`` ships them to InfluxDB.
    """
    base = {"alert_id": "", "sensor": "", "district": "", "kind": "", "rule": "", "severity": ""}
    if alert is not None:
        base.update(alert_id=alert.alert_id, sensor=alert.sensor_id, district=alert.district,
                    kind=alert.kind, rule=alert.rule, severity=alert.severity)
    base.update(labels)
    return {**base, "action": action, "receiver": receiver, "ts": ts, "actor": actor,
            "detail": detail[:1000], "attempt": attempt, "status": status}
