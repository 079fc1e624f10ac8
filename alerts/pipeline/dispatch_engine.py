"""The dispatcher's core: events, timers and officer actions in, notifications out.

:class:`Engine` keeps the pipeline's state (active alerts, aggregation
groups, silences) in memory, written through to the
:class:`~alerts.pipeline.state_store.StateStore` (the runtime's SQLite store), and turns its inputs into changes that
run through the stages of :mod:`alerts.pipeline.stages`, in the order
written there once (lifecycle → mutes → routing and groups → flapping notice
→ save; a tick: lifecycle timers → mutes → group flush → escalation). It is
synchronous and takes ``now`` explicitly, so it can be driven by the
asyncio service, by tests with a fake clock, or by property tests.

Sensor facts are carried once, by the event: the stream worker looks the
sensor up in its registry and sends kind, district and name (the
``sensor_name`` label) with every event; the alert takes them from the event
that raises it (:meth:`~alerts.model.Alert.from_event`). The registry here
only adds what the event does not carry, the sensor's position (CAP areas).

Notifications are put in the store's outbox and history records in its
history outbox within the caller's transaction (``with store.transaction():``);
:attr:`Engine.woken` names the receivers with new outbox rows.
"""

from __future__ import annotations

from typing import Any

from alerts.config import AlertingConfig
from alerts.model import Alert, alert_key, history_record
from alerts.notification import Notification
from alerts.pipeline.escalation import Escalator
from alerts.pipeline.grouping import AggregationGroup
from alerts.pipeline.inhibit import Inhibitor
from alerts.pipeline.lifecycle import Lifecycle, Transition
from alerts.pipeline.muting import Muter
from alerts.pipeline.routing import Route, RouteTree
from alerts.pipeline.silence import MaintenanceWindow, Silence, Silencer
from alerts.pipeline.stages import ALERT_STAGES, TICK_STAGES, Change, remute_all, run_stages
from alerts.pipeline.state_store import StateStore
from cityeye.contracts import AlertEvent, alert_id_for
from cityeye.errors import CityEyeError
from cityeye.sensor_registry import SensorRegistry

__all__ = ["Engine", "AlertNotFound", "ActionConflict", "INTERNAL_RULE"]

#: rule of the internal alert raised when a receiver keeps failing
INTERNAL_RULE = "receiver_failing"
_MAX_TEXT = 2000


class AlertNotFound(CityEyeError):
    """No alert with that id."""


class ActionConflict(CityEyeError):
    """The action does not apply to the alert's current state (e.g. ack of a resolved alert)."""


class Engine:
    """The pipeline's state and its inputs: events, ticks, officer actions, silences, delivery feedback."""

    def __init__(self, cfg: AlertingConfig, store: StateStore, registry: SensorRegistry | None = None) -> None:
        self.cfg, self.store = cfg, store
        #: sensor registry: coordinates for notifications (CAP areas)
        self.registry = registry
        self.lifecycle = Lifecycle(cfg.timings)
        self.routes = RouteTree(cfg.route)
        #: asked in this order whether an alert is muted: silences and windows, then inhibition
        self.muters: tuple[Muter, ...] = (
            Silencer(lambda: self.silences.values(), [MaintenanceWindow(w) for w in cfg.maintenance_windows]),
            Inhibitor(cfg.inhibit_rules, lambda: self.active.values()),
        )
        self.escalator = Escalator(cfg.timings)
        #: receivers with new outbox rows since the caller last cleared this
        self.woken: set[str] = set()
        self.reload()

    def reload(self) -> None:
        """(Re)load the in-memory view from the store (start-up, or after a rolled-back batch)."""
        alerts = [Alert.from_dict(d) for d in self.store.active_alerts()]
        self.active: dict[str, Alert] = {a.key: a for a in alerts}
        self.by_id: dict[str, Alert] = {a.alert_id: a for a in alerts}
        self.groups = {g.key: g for g in map(AggregationGroup.from_dict, self.store.groups())}
        #: each group as last written to the store (an unchanged group is not written again)
        self._saved_groups: dict[str, dict[str, Any]] = {k: g.to_dict() for k, g in self.groups.items()}
        self.silences = {s.id: s for s in map(Silence.from_dict, self.store.silences())}

    # -- lookups --------------------------------------------------------------
    def get(self, alert_id: str) -> Alert | None:
        if alert_id in self.by_id:
            return self.by_id[alert_id]
        d = self.store.get_alert(alert_id)
        return Alert.from_dict(d) if d else None

    def route_of(self, group: AggregationGroup) -> Route:
        """The route of ``group`` (the root if the configuration no longer has it)."""
        return self.routes.by_id.get(group.route_id, self.routes.root)

    def _require(self, alert_id: str) -> Alert:
        alert = self.get(alert_id)
        if alert is None:
            raise AlertNotFound(f"no alert with id {alert_id[:64]!r}")
        return alert

    # -- input ----------------------------------------------------------------
    def _closed_episode_event(self, ev: AlertEvent) -> bool:
        """Whether ``ev`` is a redelivered or late event of an episode already closed.

        The stream workers are at-least-once: after a crash they may send an
        episode's events again, possibly after it resolved. Such an event
        (seen before, or not newer than the closed alert's last event time)
        must not raise the alert again. A genuinely new firing event of the
        same episode (the officer closed it by hand while the sensor still
        fires) is newer, and raises a new alert.
        """
        closed = self.get(ev.alert_id)
        if closed is None or closed.active:
            return False
        return ev.event_id in closed.seen_events or ev.updated_at <= closed.updated_at

    def apply_event(self, ev: AlertEvent, now: float) -> Alert | None:
        """Apply one event from ``alerts.events``; returns the alert it touched."""
        current = self.active.get(alert_key(ev.sensor_id, ev.rule))
        if current is None and self._closed_episode_event(ev):
            return None
        alert, transitions = self.lifecycle.apply(current, ev, now)
        if alert is None:
            return None
        if alert is not current:
            if alert.alert_id in self.by_id or self.store.get_alert(alert.alert_id) is not None:
                # the episode's id was closed by hand: the new alert gets its own id
                alert.alert_id = alert_id_for(alert.sensor_id, alert.rule, now)
            self.active[alert.key] = alert
            self.by_id[alert.alert_id] = alert
            sensor = self.registry.get(alert.sensor_id) if self.registry is not None else None
            if sensor is not None:
                alert.lat, alert.lon = sensor.lat, sensor.lon
        if transitions:
            run_stages(ALERT_STAGES, self, Change(alert, now, transitions))
        else:
            self.save_alert(alert)
        return alert

    def tick(self, now: float) -> None:
        """Timers: due resolves, silence windows, group flushes, escalations, reminders."""
        run_stages(TICK_STAGES, self, now)

    # -- officer actions ----------------------------------------------------------
    def _officer_action(self, alert: Alert, transitions: list[Transition], now: float) -> None:
        run_stages(ALERT_STAGES, self, Change(alert, now, transitions, by_officer=True))

    def acknowledge(self, alert_id: str, actor: str, now: float, comment: str = "") -> Alert:
        alert = self._require(alert_id)
        if not alert.active:
            raise ActionConflict(f"alert {alert_id} is resolved; nothing to acknowledge")
        if alert.acknowledged_by:
            raise ActionConflict(f"alert {alert_id} is already acknowledged by {alert.acknowledged_by}")
        alert.acknowledged_by, alert.acknowledged_at = actor, now
        self._officer_action(alert, [Transition(alert, "acknowledged", comment, actor)], now)
        return alert

    def assign(self, alert_id: str, actor: str, assignee: str, now: float) -> Alert:
        alert = self._require(alert_id)
        if not alert.active:
            raise ActionConflict(f"alert {alert_id} is resolved; it cannot be assigned")
        alert.assignee = assignee
        self._officer_action(alert, [Transition(alert, "assigned", f"assigned to {assignee}", actor)], now)
        return alert

    def comment(self, alert_id: str, actor: str, text: str, now: float) -> Alert:
        alert = self._require(alert_id)
        self._officer_action(alert, [Transition(alert, "commented", text, actor)], now)
        return alert

    def resolve(self, alert_id: str, actor: str, now: float, comment: str = "") -> Alert:
        alert = self._require(alert_id)
        if not alert.active:
            raise ActionConflict(f"alert {alert_id} is already resolved")
        run_stages(ALERT_STAGES, self, Change(alert, now, self.lifecycle.resolve_manually(alert, actor, now, comment)))
        return alert

    def add_silence(self, silence: Silence, now: float) -> Silence:
        silence.created_at = silence.created_at or now
        self.silences[silence.id] = silence
        self.store.save_silence(silence.to_dict())
        remute_all(self, now)
        return silence

    def expire_silence(self, silence_id: str, now: float) -> Silence:
        silence = self.silences.get(silence_id)
        if silence is None:
            raise AlertNotFound(f"no silence with id {silence_id[:64]!r}")
        if silence.state(now) == "expired":
            raise ActionConflict(f"silence {silence_id} has already expired")
        silence.expired_at = now
        self.store.save_silence(silence.to_dict())
        remute_all(self, now)
        return silence

    # -- delivery feedback -------------------------------------------------------
    def record_delivery(self, note: Notification, attempt: int, status: str, detail: str, now: float) -> None:
        """Timeline entry + history record ``notified`` on every alert of ``note``."""
        records = []
        for snap in note.alerts:
            alert = self.get(snap.alert_id)
            if alert is None:
                continue
            alert.record(now, "notified", detail=f"{note.reason}: {detail}"[:_MAX_TEXT], receiver=note.receiver,
                         attempt=attempt, status=status)
            self.save_alert(alert)
            records.append(history_record(alert, "notified", now, detail=f"{note.reason} {note.id}: {detail}",
                                  receiver=note.receiver, attempt=attempt, status=status))
        self.store.history_add(records)

    def receiver_failing(self, receiver: str, reason: str, now: float) -> Alert | None:
        """Raise (or refresh) the internal alert about a receiver that keeps failing."""
        sensor = f"receiver:{receiver}"
        current = self.active.get(alert_key(sensor, INTERNAL_RULE))
        started = current.started_at if current else now
        ev = AlertEvent(alert_id=current.alert_id if current else alert_id_for(sensor, INTERNAL_RULE, now),
                        sensor_id=sensor, kind="system", district="system", rule=INTERNAL_RULE, severity="orange",
                        state="firing", started_at=started, updated_at=now, value=None, threshold=None,
                        message=f"notifications to receiver {receiver!r} are failing: {reason}"[:_MAX_TEXT],
                        labels={"receiver": receiver})
        return self.apply_event(ev, now)

    def receiver_recovered(self, receiver: str, now: float) -> None:
        current = self.active.get(alert_key(f"receiver:{receiver}", INTERNAL_RULE))
        if current is not None and current.resolve_at is None:
            ev = AlertEvent(alert_id=current.alert_id, sensor_id=current.sensor_id, kind="system", district="system",
                            rule=INTERNAL_RULE, severity=current.severity, state="resolved",
                            started_at=current.started_at,
                            updated_at=now, value=None, threshold=None, message=f"receiver {receiver!r} delivers again")
            self.apply_event(ev, now)

    # -- what the stages write ---------------------------------------------------------
    def enqueue(self, note: Notification, now: float) -> None:
        """Put ``note`` in the outbox (once per id) and wake its receiver."""
        if self.store.outbox_add(note.id, note.receiver, note.to_dict(), now):
            self.woken.add(note.receiver)

    def save_alert(self, alert: Alert) -> None:
        """Write ``alert`` through to the store; a resolved alert leaves the active set."""
        self.store.save_alert(alert.to_dict())
        if not alert.active:
            if self.active.get(alert.key) is alert:
                del self.active[alert.key]
            self.by_id.pop(alert.alert_id, None)

    def save_group(self, group: AggregationGroup) -> None:
        """Write ``group`` through to the store (unless unchanged since the last write); one without
        alerts or escalation is dropped."""
        if group.alert_ids or group.escalation_level:
            d = group.to_dict()
            if self._saved_groups.get(group.key) != d:
                self.store.save_group(group.key, d)
                self._saved_groups[group.key] = d
        else:
            self.groups.pop(group.key, None)
            self._saved_groups.pop(group.key, None)
            self.store.delete_group(group.key)

    def stats(self) -> dict[str, Any]:
        return {"active_alerts": len(self.active), "groups": len(self.groups),
                "silences": len(self.silences), "outbox": self.store.outbox_size()}
