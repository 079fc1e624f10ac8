"""The dispatch pipeline's stage order, written once, as data.

As Alertmanager's ``notify.go`` builds its pipeline from named stages, the
:class:`~alerts.pipeline.dispatch_engine.Engine` runs these tuples; each
stage is a small function of the engine's state, synchronous, with an
explicit ``now``.

:data:`ALERT_STAGES` — an alert changed (a :class:`Change`): the lifecycle
raised, updated or resolved it (an event or a due resolve), or an officer
acted on it; those changes carry their transitions. A change without
transitions is a re-check of the alert's mutes (time passed, a silence was
added or expired, an inhibiting alert changed): only ``mute`` may find
something, and ``group`` and ``save`` follow only if it did.

=================  =====================================================================
timeline           officer actions go on the alert's timeline (lifecycle transitions are
                   there already)
history            one history record per transition
mute others        a change of this alert may inhibit or release others: their mutes are
                   re-checked (:data:`ALERT_STAGES` without transitions, for each)
mute               silences + maintenance windows, then inhibition, of this alert
                   (:func:`~alerts.pipeline.muting.remute`); a changed mute is a history
                   record
group              the routes the alert matches → its aggregation groups; schedules the
                   groups' next flush
flapping notice    an alert that started flapping: one notice to each of its groups
save               the alert is written through to the store (a resolved one leaves the
                   active set)
=================  =====================================================================

:data:`TICK_STAGES` — time passed:

=================  =====================================================================
lifecycle timers   due pending resolves take effect (each a change through
                   :data:`ALERT_STAGES`)
mutes              every active alert's mutes are re-checked (silences and windows begin
                   and end)
groups             every aggregation group runs :data:`GROUP_STAGES`
=================  =====================================================================

:data:`GROUP_STAGES` — one aggregation group at a tick: ``flush`` (if due: a
``new``/``update``/``repeat``/``resolved`` notification; resolved alerts
leave the group), ``escalate`` (escalations and reminders due), ``save``
(an empty group without escalation is dropped).

Notifications go into the store's outbox and history records into its
history outbox, within the caller's transaction.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Callable, NamedTuple

from alerts.model import Alert, history_record
from alerts.pipeline.grouping import AggregationGroup, flush_group, make_notification
from alerts.pipeline.lifecycle import Transition
from alerts.pipeline.muting import remute
from alerts.pipeline.routing import Route, group_key

if TYPE_CHECKING:
    from alerts.pipeline.dispatch_engine import Engine

__all__ = ["Stage", "Change", "GroupTick", "ALERT_STAGES", "GROUP_STAGES", "TICK_STAGES", "run_stages", "remute_all"]


class Stage(NamedTuple):
    """One named step of the pipeline."""

    name: str
    run: Callable[..., None]


def run_stages(stages: tuple[Stage, ...], engine: Engine, subject: Any) -> None:
    """Run ``stages`` in order on ``subject`` (a :class:`Change`, a :class:`GroupTick`, or ``now`` for a tick)."""
    for stage in stages:
        stage.run(engine, subject)


@dataclass
class Change:
    """One alert going through :data:`ALERT_STAGES`."""

    alert: Alert
    now: float
    #: what happened to it (none: only its mutes are re-checked)
    transitions: list[Transition] = field(default_factory=list)
    #: officer actions: the transitions still have to go on the alert's timeline
    by_officer: bool = False
    #: whether the alert changed: it has transitions, or the mute stage changed a mute
    changed: bool = False

    def __post_init__(self) -> None:
        self.changed = self.changed or bool(self.transitions)


@dataclass
class GroupTick:
    """One aggregation group going through :data:`GROUP_STAGES`."""

    group: AggregationGroup
    route: Route
    #: the group's alerts (``group.alert_ids`` resolved to state, taken before the flush)
    alerts: list[Alert]
    now: float


# -- an alert changed ------------------------------------------------------------------

def _timeline(engine: Engine, change: Change) -> None:
    if change.by_officer:
        for tr in change.transitions:
            change.alert.record(change.now, tr.action, actor=tr.actor, detail=tr.detail)


def _history(engine: Engine, change: Change) -> None:
    engine.store.history_add([history_record(change.alert, tr.action, change.now, actor=tr.actor, detail=tr.detail)
                              for tr in change.transitions])


def _mute_others(engine: Engine, change: Change) -> None:
    if change.transitions and any(m.mutes_others(change.alert) for m in engine.muters):
        remute_all(engine, change.now, skip=change.alert)


def _mute(engine: Engine, change: Change) -> None:
    for action, detail in remute(change.alert, engine.muters, change.now):
        engine.store.history_add([history_record(change.alert, action, change.now, detail=detail)])
        change.changed = True


def _group(engine: Engine, change: Change) -> None:
    if not change.changed:
        return
    alert, now = change.alert, change.now
    labels = alert.label_set()
    keys = []
    for route in engine.routes.match(labels):
        key = group_key(route, labels)
        keys.append(key)
        group = engine.groups.get(key)
        if group is None:
            # versions start at the creation time in ms: a re-created group never reuses an id
            group = engine.groups[key] = AggregationGroup(key, route.id, route.receiver,
                                                          route.group_labels(labels), now, seq=int(now * 1000))
        group.add(alert.alert_id, route, now)
        engine.save_group(group)
    for old in set(alert.groups) - set(keys):
        group = engine.groups.get(old)
        if group is not None and alert.alert_id in group.alert_ids:
            group.alert_ids.remove(alert.alert_id)
            group.changed(engine.route_of(group), now)
            engine.save_group(group)
    alert.groups = keys


def _flapping_notice(engine: Engine, change: Change) -> None:
    if not any(tr.action == "flapping" for tr in change.transitions):
        return
    alert = change.alert
    for key in alert.groups:
        group = engine.groups[key]
        summary = (f"[FLAPPING] {alert.sensor_name or alert.sensor_id} {alert.rule} ({alert.severity}) keeps "
                   "changing state; notifications about it are paused until it settles")
        engine.enqueue(make_notification(group, group.receiver, "flapping", [alert], change.now, summary), change.now)
        engine.save_group(group)


def _save(engine: Engine, change: Change) -> None:
    if change.changed:
        engine.save_alert(change.alert)


ALERT_STAGES: tuple[Stage, ...] = (
    Stage("timeline", _timeline),
    Stage("history", _history),
    Stage("mute others", _mute_others),
    Stage("mute", _mute),
    Stage("group", _group),
    Stage("flapping notice", _flapping_notice),
    Stage("save", _save),
)


def remute_all(engine: Engine, now: float, skip: Alert | None = None) -> None:
    """Re-check the mutes of every active alert (but ``skip``)."""
    for alert in list(engine.active.values()):
        if alert is not skip:
            run_stages(ALERT_STAGES, engine, Change(alert, now))


# -- one aggregation group at a tick -------------------------------------------------------

def _flush(engine: Engine, tick: GroupTick) -> None:
    if tick.group.due(tick.route, tick.now):
        note = flush_group(tick.group, tick.route, tick.alerts, tick.now)
        if note is not None:
            engine.enqueue(note, tick.now)


def _escalate(engine: Engine, tick: GroupTick) -> None:
    due = engine.escalator.next_due(tick.group, tick.alerts)
    if (due is not None and due <= tick.now) or (due is None and tick.group.escalation_level):
        for note in engine.escalator.check(tick.group, tick.route, tick.alerts, tick.now):
            engine.enqueue(note, tick.now)


def _save_group(engine: Engine, tick: GroupTick) -> None:
    engine.save_group(tick.group)


GROUP_STAGES: tuple[Stage, ...] = (
    Stage("flush", _flush),
    Stage("escalate", _escalate),
    Stage("save", _save_group),
)


# -- a tick ----------------------------------------------------------------------------------

def _lifecycle_timers(engine: Engine, now: float) -> None:
    for alert in list(engine.active.values()):
        transitions = engine.lifecycle.tick(alert, now)
        if transitions:
            run_stages(ALERT_STAGES, engine, Change(alert, now, transitions))


def _groups(engine: Engine, now: float) -> None:
    for group in list(engine.groups.values()):
        alerts = [a for a in map(engine.get, group.alert_ids) if a is not None]
        run_stages(GROUP_STAGES, engine, GroupTick(group, engine.route_of(group), alerts, now))


TICK_STAGES: tuple[Stage, ...] = (
    Stage("lifecycle timers", _lifecycle_timers),
    Stage("mutes", remute_all),
    Stage("groups", _groups),
)
