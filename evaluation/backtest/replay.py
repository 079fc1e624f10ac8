"""A dry run of the real pipeline on recorded data, on the data's own clock.

Two stages, as in production:

1. per sensor, the stream worker's :class:`~streams.sensor_engine.SensorEngine`
   with the checks the rulebook builds (:func:`run_sensor`); between two
   readings further apart than the sensor's interval the engine is ticked
   once per missed interval, as the worker's clock would (no-data rules);
2. all sensors' alert events, merged in time order, through the dispatcher's
   :class:`~alerts.pipeline.dispatch_engine.Engine` with its real lifecycle
   (keep-firing-for, flapping), silences, inhibition, routing, grouping and
   escalation (:func:`run_lifecycle`), ``now`` = the event's time. Its store
   is in memory and nothing is delivered: the notifications it *would* send
   are read from its outbox.

Stage 1 is independent per sensor, so ``workers > 1`` runs it in that many
processes (:func:`run_sensors`). Everything is a function of the data, the
rules and the alerting configuration: the same inputs give the same result.
"""

from __future__ import annotations

import json
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from typing import Any, Callable, Sequence

from cityeye.contracts import SEVERITY_RANK, AlertEvent, Reading
from cityeye.sensor_registry import Sensor, SensorRegistry
from detectors.rulebook import Rulebook, parse_rulebook
from streams.sensor_engine import SensorEngine

__all__ = ["Episode", "SensorRun", "Notice", "run_sensor", "run_sensors", "run_lifecycle", "episodes_of"]

#: the lifecycle's timers are ticked every ``tick_s`` for this long after the last change, then every QUIET_TICK_S
QUIET_S = 6 * 3600.0
QUIET_TICK_S = 600.0
#: how many missed intervals of one gap are ticked at most (a gap of months is not ticked minute by minute)
MAX_GAP_TICKS = 2000


@dataclass
class Episode:
    """One alert episode of one rule of one sensor, as the stream engine raised it."""

    sensor_id: str
    rule: str
    alert_id: str
    start: float
    #: resolve time, or None if still firing when the data ended
    end: float | None
    #: (time, severity) of every firing event, in order
    severities: list[tuple[float, str]] = field(default_factory=list)

    @property
    def max_severity(self) -> str:
        return max((s for _, s in self.severities), key=SEVERITY_RANK.__getitem__)

    def to_dict(self) -> dict[str, Any]:
        return {"sensor_id": self.sensor_id, "rule": self.rule, "alert_id": self.alert_id, "start": self.start,
                "end": self.end, "max_severity": self.max_severity, "severities": self.severities}


@dataclass
class SensorRun:
    sensor_id: str
    readings: int
    events: list[AlertEvent]
    check_errors: int = 0
    #: the builder's notes per check (sampling, missing levels)
    notes: dict[str, list[str]] = field(default_factory=dict)


@dataclass
class Notice:
    """A notification the dispatcher would have sent."""

    at: float
    receiver: str
    reason: str
    status: str
    summary: str
    alert_ids: list[str]


def run_sensor(sensor: Sensor, readings: Sequence[Reading], rulebook: Rulebook) -> SensorRun:
    """Stage 1 for one sensor (see the module docstring)."""
    engine = SensorEngine(SensorRegistry({sensor.id: sensor}), checks_factory=rulebook.checks_for)
    interval = float(sensor.interval_s)
    events: list[AlertEvent] = []
    last: float | None = None
    for reading in readings:
        if last is not None and reading.ts - last > 1.5 * interval:
            missed = min(int((reading.ts - last) / interval), MAX_GAP_TICKS)
            step = (reading.ts - last) / (missed + 1) if missed >= MAX_GAP_TICKS else interval
            for k in range(1, missed + 1):
                t = last + k * step
                if t >= reading.ts:
                    break
                events += engine.tick(t, [sensor.id])
        events += engine.process(reading)
        last = reading.ts
    notes = {eff.name: built.notes for eff, built in rulebook.build(sensor) if built.notes}
    return SensorRun(sensor.id, len(readings), events, engine.check_errors, notes)


def _run_chunk(args: tuple[list[tuple[Sensor, list[Reading]]], str | None, str]) -> list[SensorRun]:
    items, rules_text, rules_source = args
    rulebook = parse_rulebook(rules_text, rules_source)
    return [run_sensor(sensor, readings, rulebook) for sensor, readings in items]


def run_sensors(sensors: Sequence[Sensor], readings: dict[str, list[Reading]], rules_text: str | None,
                rules_source: str = "<rules>", workers: int = 1,
                progress: Callable[[int], None] | None = None) -> list[SensorRun]:
    """Stage 1 for every sensor, in ``workers`` processes; ``progress(readings done)`` after each sensor."""
    jobs = [(s, readings.get(s.id, [])) for s in sensors]
    if workers <= 1:
        rulebook = parse_rulebook(rules_text, rules_source)
        out = []
        for sensor, rows in jobs:
            out.append(run_sensor(sensor, rows, rulebook))
            if progress:
                progress(len(rows))
        return out
    chunks = [jobs[i::workers * 4] for i in range(workers * 4)]
    out = []
    with ProcessPoolExecutor(max_workers=workers) as pool:
        for runs in pool.map(_run_chunk, [(c, rules_text, rules_source) for c in chunks if c]):
            out += runs
            if progress:
                progress(sum(r.readings for r in runs))
    order = {s.id: i for i, s in enumerate(sensors)}
    return sorted(out, key=lambda r: order[r.sensor_id])


def episodes_of(events: Sequence[AlertEvent]) -> list[Episode]:
    """The stream engine's events as episodes (one per alert id)."""
    by_id: dict[str, Episode] = {}
    for ev in events:
        ep = by_id.get(ev.alert_id)
        if ep is None:
            ep = by_id[ev.alert_id] = Episode(ev.sensor_id, ev.rule, ev.alert_id, ev.started_at, None)
        if ev.state == "firing":
            ep.severities.append((ev.updated_at, ev.severity))
        else:
            ep.end = ev.updated_at
    return sorted(by_id.values(), key=lambda e: (e.start, e.sensor_id, e.rule))


def run_lifecycle(events: Sequence[AlertEvent], alerting: Any, registry: SensorRegistry, end: float,
                  tick_s: float = 60.0, ack_after_s: float | None = 1800.0) -> list[Notice]:
    """Stage 2: every event through the dispatcher's pipeline at its own time; the notifications it queued.

    Timers (group flushes, keep-firing resolves, escalations) are ticked
    every ``tick_s`` of data time while anything is active -- every
    :data:`QUIET_TICK_S` once nothing has changed for :data:`QUIET_S`, when
    only repeats of unchanged groups are left to send (a year-long alert
    costs thousands of ticks, not half a million) -- and up to ``end`` plus
    the longest delay after the last event. A duty officer is
    modelled as acknowledging every alert ``ack_after_s`` after it was
    raised (``None``: nobody ever does, and unacknowledged orange and red
    alerts escalate and remind for as long as they fire).
    """
    from alerts.pipeline.dispatch_engine import Engine
    from alerts.runtime.store import Store

    store = Store(":memory:")
    store.history_enabled = False
    engine = Engine(alerting, store, registry)
    notices: list[Notice] = []
    seen: set[str] = set()
    now: float | None = None

    def collect() -> None:
        for receiver in store.outbox_receivers():
            for row in store.outbox_due(receiver, float("inf"), limit=100000):
                if row.id in seen:
                    continue
                seen.add(row.id)
                body = json.loads(row.body)
                notices.append(Notice(body["created_at"], receiver, body["reason"], body["status"],
                                      body.get("summary", ""), [a["alert_id"] for a in body.get("alerts", [])]))
                store.outbox_remove(row.id)

    def acknowledge(at: float) -> None:
        nonlocal changed
        if ack_after_s is None:
            return
        for alert in list(engine.active.values()):
            if not alert.acknowledged_by and alert.started_at + ack_after_s <= at:
                engine.acknowledge(alert.alert_id, "backtest (acknowledged after "
                                                   f"{ack_after_s / 60:g} min)", at)
                changed = at

    changed = 0.0  # data time of the last event or acknowledgement

    def advance(to: float) -> None:
        nonlocal now
        while now is not None and now + tick_s < to and (engine.active or engine.groups):
            # every tick_s while things change; coarser once the alerts have been quiet for QUIET_S
            step = tick_s if now - changed < QUIET_S else QUIET_TICK_S
            now = min(now + step, to - tick_s) if step > tick_s else now + step
            with store.transaction():
                acknowledge(now)
                engine.tick(now)
            collect()
        now = to if now is None or to > now else now

    for ev in sorted(events, key=lambda e: (e.updated_at, e.sensor_id, e.rule)):
        advance(ev.updated_at)
        changed = ev.updated_at
        with store.transaction():
            engine.apply_event(ev, ev.updated_at)
            engine.tick(ev.updated_at)
        collect()
    timings = alerting.timings
    advance(max(end, now or end) + timings.keep_firing_for + 2 * tick_s)
    with store.transaction():
        engine.tick(now or end)
    collect()
    store.close()
    return sorted(notices, key=lambda n: (n.at, n.receiver))
