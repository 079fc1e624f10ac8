"""Per-sensor detector state and the transitions that become alert events.

Pure Python, no Faust, no Kafka: :class:`SensorEngine` owns each sensor's
checks (built by a ``checks_factory(sensor)``, by default
:func:`detectors.default_checks.default_checks` from the registry's levels), takes a
:class:`~cityeye.contracts.Reading` and returns the
:class:`~cityeye.contracts.AlertEvent` s its findings' transitions imply.

Transitions, per (sensor, check):

* ``None`` -> finding: a ``firing`` event; the episode starts at the
  reading's time and its id is ``alert_id_for(sensor, rule, started_at)``.
* finding -> finding of another severity: a ``firing`` event with the new
  severity and the same alert id (escalation or de-escalation).
* finding -> ``None``: a ``resolved`` event with the same alert id, the
  last severity and the last finding's value and threshold (the same
  quantity as the threshold, e.g. the 3 h rain total, not the last reading).

Every event is a function of the readings only (``updated_at`` is the
reading's time), so replaying the same readings yields the same events,
alert ids and event ids. Clock ticks (:meth:`SensorEngine.tick`, for the
stale rule) use the caller's clock; a tick finding's episode starts at
``extra["started_at"]`` if the check gives one, else at
``extra["last_seen"] + threshold`` (the stale rule's moment of going
stale), else at the tick time.

State moves to and from plain JSON-able data per sensor
(:meth:`SensorEngine.snapshot` / :meth:`SensorEngine.restore`) together with
the position (e.g. Kafka offset) of the last reading it includes, so readings
at or before that position are skipped when replayed after a restore.
"""

from __future__ import annotations

import logging
from typing import Any, Callable, Iterable

from cityeye.contracts import AlertEvent, Reading, alert_id_for
from cityeye.kinds import kind_names
from cityeye.errors import ValidationError
from cityeye.sensor_registry import Sensor, SensorRegistry
from detectors.base import Check, Finding, finite_value
from detectors.rule_library import CHECK_TYPES
from streams.interval import IntervalLearner
from streams.sensor_state import Episode, SensorState

__all__ = ["ChecksFactory", "Episode", "SensorState", "SensorEngine", "default_checks_factory"]

log = logging.getLogger(__name__)

#: Builds a sensor's checks (each with a distinct ``name``).
ChecksFactory = Callable[[Sensor], list[Check]]

#: Version of the snapshot layout; a snapshot of another version is ignored.
SNAPSHOT_VERSION = 1

#: check class -> its type in the rule library: the ``check_type`` label of its events
_TYPE_OF_CHECK = {cls: name for name, cls in CHECK_TYPES.items()}


def default_checks_factory(sensor: Sensor) -> list[Check]:
    """``detectors.default_checks.default_checks`` for the sensor's kind, levels and interval."""
    from detectors.default_checks import default_checks

    return default_checks(sensor.kind, dict(sensor.levels), sensor.interval_s)


def _finite(v: Any) -> float | None:
    return finite_value({"v": v}, "v")


def _spec(check: Check) -> str | None:
    """The declaration a check was built from (set by the rules), or None for a check built in code."""
    return getattr(check, "rule_spec", None)


class SensorEngine:
    """Runs each sensor's checks and turns their transitions into events.

    Parameters
    ----------
    registry
        Sensors with their levels; a reading of an unregistered sensor gets
        the checks of its kind without levels (logged once).
    checks_factory
        ``checks_factory(sensor) -> list[Check]``; default
        :func:`default_checks_factory`.
    """

    def __init__(self, registry: SensorRegistry | None = None, checks_factory: ChecksFactory | None = None) -> None:
        self.registry = registry or SensorRegistry()
        self.checks_factory = checks_factory or default_checks_factory
        self._states: dict[str, SensorState] = {}
        #: check errors (an exception inside a check) since start
        self.check_errors = 0
        #: replayed readings skipped because a restored snapshot includes them
        self.skipped = 0
        #: content hash of the rules the checks are built from; every alert event carries it as a label
        self.rules_version: str | None = None

    # -- sensors ---------------------------------------------------------------

    def __contains__(self, sensor_id: str) -> bool:
        return sensor_id in self._states

    def __len__(self) -> int:
        return len(self._states)

    def sensor_ids(self) -> list[str]:
        return list(self._states)

    def state(self, sensor_id: str) -> SensorState | None:
        return self._states.get(sensor_id)

    def drop(self, sensor_ids: Iterable[str]) -> None:
        """Forget sensors (their partition went to another worker)."""
        for sid in sensor_ids:
            self._states.pop(sid, None)

    def _sensor_for(self, sensor_id: str, kind: str, district: str) -> Sensor:
        if kind not in kind_names():
            raise ValidationError(f"reading of sensor {sensor_id!r} has unknown kind {kind!r}")
        sensor = self.registry.get(sensor_id)
        if sensor is None:
            log.warning("sensor %r is not in the registry %s: running %s checks without levels",
                        sensor_id, self.registry.source, kind)
            return Sensor.model_construct(id=sensor_id, kind=kind, district=district, name="", lat=0.0, lon=0.0,
                                          interval_s=60.0, levels={})
        if not sensor.agrees_with(kind):  # the gateway refuses these; a record may have bypassed it
            raise ValidationError(
                f"reading of sensor {sensor_id!r} has kind {kind!r} but the registry says {sensor.kind!r}")
        return sensor

    def warm_up(self) -> list[str]:
        """Build, and drop, the checks of the first registered sensor of each kind; the kinds built.

        A kind's first build pays one-off costs its later ones do not: the
        detectors' libraries are imported (River, for the traffic model: ~1 s
        of CPU here) and the rules' models made. Paid here, at a worker's start,
        they neither hold up the first batch of readings nor count against its
        readings. A build that fails is logged and left to the sensor's first
        reading (dead-lettered there, as before).
        """
        first: dict[str, Sensor] = {}
        for sensor in self.registry:
            first.setdefault(sensor.kind, sensor)
        built = []
        for kind, sensor in first.items():
            try:
                self.checks_factory(sensor)
            except Exception:  # the first reading meets it again and dead-letters it
                log.exception("building the checks of %s (warming up the %s checks) failed", sensor.id, kind)
                continue
            built.append(kind)
        return built

    def _new_state(self, sensor: Sensor) -> SensorState:
        checks = list(self.checks_factory(sensor))
        names = [c.name for c in checks]
        if len(set(names)) != len(names) or not all(names):
            raise ValueError(f"checks of sensor {sensor.id!r} need distinct non-empty names, got {names}")
        learner = None if "interval_s" in sensor.model_fields_set else IntervalLearner()
        return SensorState(sensor=sensor, checks=checks, episodes={}, learner=learner)

    def _state_for(self, reading: Reading) -> SensorState:
        st = self._states.get(reading.sensor_id)
        if st is None:
            st = self._new_state(self._sensor_for(reading.sensor_id, reading.kind, reading.district))
            self._states[reading.sensor_id] = st
        elif st.sensor.kind != reading.kind:
            raise ValidationError(
                f"reading of sensor {reading.sensor_id!r} has kind {reading.kind!r}, "
                f"earlier readings had {st.sensor.kind!r}")
        return st

    # -- processing --------------------------------------------------------------

    def process(self, reading: Reading, position: int | None = None) -> list[AlertEvent]:
        """Run the sensor's checks on ``reading``; return the events it causes.

        ``position`` (e.g. the Kafka offset) orders a sensor's readings: a
        reading at or before the position of the restored state, or before
        the position of the last reading, is a replay the state already
        includes and is skipped. Several readings may share a position (the
        readings of one aggregated record, cityeye/reading_records.py); a
        snapshot always includes all of them. Raises
        :class:`~cityeye.errors.ValidationError` for a reading whose kind
        contradicts the registry (the caller dead-letters it).
        """
        st = self._states.get(reading.sensor_id)
        if st is None or st.sensor.kind != reading.kind:  # else _state_for's answer, without the call
            st = self._state_for(reading)
        if position is not None and ((st.floor is not None and position <= st.floor)
                                     or (st.position is not None and position < st.position)):
            self.skipped += 1
            return []
        events: list[AlertEvent] = []
        x, t, episodes = reading.values, reading.ts, st.episodes
        for check in st.checks:
            try:
                finding = check.process(x, t)
            except Exception:  # a faulty check must not stop the sensor's other checks
                self.check_errors += 1
                log.exception("check %s of sensor %s failed on the reading at %s; keeping its previous state",
                              check.name, st.sensor.id, t)
                continue
            if finding is not None or (episodes and check.name in episodes):  # else: no episode, nothing to do
                self._transition(st, check.name, finding, t, events)
        if position is not None:
            st.position = position
        st.last_ts = t if st.last_ts is None else max(st.last_ts, t)
        st.dirty += 1
        if st.learner is not None:
            learnt = st.learner.observe(t)
            if learnt is not None:
                st.learner = None
                if learnt > 0 and IntervalLearner.differs(learnt, st.sensor.interval_s):
                    log.info("sensor %s reports every %g s (no interval_s in the registry): checks rebuilt for it",
                             st.sensor.id, learnt)
                    st.sensor = st.sensor.model_copy(update={"interval_s": learnt})
                    events += self._rebuild_one(st, t)
        return events

    def tick(self, t: float, sensor_ids: Iterable[str] | None = None) -> list[AlertEvent]:
        """Re-evaluate the checks of ``sensor_ids`` (default all) at clock time ``t``."""
        events: list[AlertEvent] = []
        for sid in list(self._states) if sensor_ids is None else sensor_ids:
            st = self._states.get(sid)
            if st is None:
                continue
            before, episodes = len(events), st.episodes
            for check in st.checks:
                try:
                    finding = check.tick(t)
                except Exception:
                    self.check_errors += 1
                    log.exception("check %s of sensor %s failed on a clock tick at %s", check.name, sid, t)
                    continue
                if finding is not None or (episodes and check.name in episodes):
                    self._transition(st, check.name, finding, t, events, from_tick=True)
            if len(events) > before:
                st.dirty += 1
        return events

    def _transition(self, st: SensorState, name: str, finding: Finding | None, t: float,
                    out: list[AlertEvent], from_tick: bool = False) -> None:
        ep = st.episodes.get(name)
        if finding is None:
            if ep is None:
                return
            del st.episodes[name]
            ep.settle()
            out.append(self._event(st, ep, "resolved", t, f"resolved: {ep.message}"))
            return
        if ep is None:
            started = self._episode_start(finding, t) if from_tick else t
            ep = Episode(alert_id=alert_id_for(st.sensor.id, name, started), rule=name, severity=finding.severity,
                         started_at=started, value=finding.value, threshold=finding.threshold,
                         message=finding.message, field=finding.field)
            st.episodes[name] = ep
            out.append(self._event(st, ep, "firing", t))
            return
        if finding is ep.pending:  # the check kept its finding: nothing new
            return
        ep.take(finding)  # read when an event or a snapshot needs it (streams/sensor_state.py)
        if finding.severity != ep.severity:
            ep.severity = finding.severity
            out.append(self._event(st, ep, "firing", t))

    @staticmethod
    def _episode_start(finding: Finding, t: float) -> float:
        extra = finding.extra or {}
        start = _finite(extra.get("started_at"))
        if start is None:
            last_seen, threshold = _finite(extra.get("last_seen")), _finite(finding.threshold)
            if last_seen is not None and threshold is not None:
                start = last_seen + threshold
        return t if start is None or start > t else start

    def _event(self, st: SensorState, ep: Episode, state: str, t: float, message: str | None = None) -> AlertEvent:
        """The event of ``ep`` (settled first) at ``t``: its value and threshold, ``message`` or its own."""
        ep.settle()
        labels = {"field": ep.field} if ep.field else {}
        if self.rules_version:
            labels["rules_version"] = self.rules_version
        check_type = _TYPE_OF_CHECK.get(type(st.check_named(ep.rule)))
        if check_type:
            labels["check_type"] = check_type  # what the rule is (notifications name it; matchers can use it)
        # the one source of an alert's sensor facts: the dispatcher takes them from here, it does not look them up
        facts = {"sensor_name": st.sensor.name, "datum": st.sensor.datum, "unit": st.sensor.unit}
        labels.update({label: value for label, value in facts.items() if value})
        return AlertEvent(
            alert_id=ep.alert_id, sensor_id=st.sensor.id, kind=st.sensor.kind, district=st.sensor.district,
            rule=ep.rule, severity=ep.severity, state=state, started_at=ep.started_at, updated_at=t,
            value=ep.value, threshold=ep.threshold, message=ep.message if message is None else message, labels=labels,
        )

    # -- rules changed ----------------------------------------------------------------

    def rebuild_checks(self, t: float | None = None) -> tuple[list[AlertEvent], set[str]]:
        """Apply a changed ``checks_factory`` to every sensor; returns the events and the sensors changed.

        A check whose rule is unchanged (same name and :func:`_spec`) keeps
        its object and so its state; a changed one starts fresh and keeps
        its open episode (its next finding continues or resolves it); the
        open episode of a check that no longer exists is resolved at ``t``
        (default: the sensor's last reading time).
        """
        events: list[AlertEvent] = []
        changed: set[str] = set()
        for sid, st in self._states.items():
            before = [id(c) for c in st.checks]
            events += self._rebuild_one(st, t)
            if [id(c) for c in st.checks] != before:
                changed.add(sid)
        return events, changed

    def _rebuild_one(self, st: SensorState, t: float | None) -> list[AlertEvent]:
        old = {c.name: c for c in st.checks}
        fresh = self._new_state(st.sensor).checks
        checks = [old[c.name] if c.name in old and _spec(old[c.name]) is not None
                  and _spec(old[c.name]) == _spec(c) else c for c in fresh]
        if [id(c) for c in checks] == [id(c) for c in st.checks]:
            return []
        st.checks = checks
        st.dirty += 1
        names = {c.name for c in checks}
        at = t if t is not None else (st.last_ts or 0.0)
        events = []
        for name in [n for n in st.episodes if n not in names]:
            ep = st.episodes.pop(name)
            events.append(self._event(st, ep, "resolved", at, f"resolved: rule {name} removed"))
        return events

    # -- snapshots ------------------------------------------------------------------

    def due(self, sensor_id: str, every: int) -> bool:
        """Whether the sensor has ``every`` or more readings since its last snapshot."""
        st = self._states.get(sensor_id)
        return st is not None and st.dirty >= every

    def dirty(self, sensor_id: str) -> bool:
        st = self._states.get(sensor_id)
        return st is not None and st.dirty > 0

    def snapshot(self, sensor_id: str) -> dict[str, Any]:
        """The sensor's state as JSON-able data; marks it clean."""
        st = self._states[sensor_id]
        st.dirty = 0
        return {
            "v": SNAPSHOT_VERSION,
            "sensor_id": st.sensor.id,
            "kind": st.sensor.kind,
            "district": st.sensor.district,
            "position": st.position,
            "last_ts": st.last_ts,
            "interval_s": st.sensor.interval_s if "interval_s" in st.sensor.model_fields_set else None,
            "checks": {c.name: c.snapshot() for c in st.checks},
            "specs": {c.name: spec for c in st.checks if (spec := _spec(c)) is not None},
            "episodes": st.settled_episodes(),
        }

    def restore(self, snapshot: dict[str, Any]) -> bool:
        """Rebuild a sensor from :meth:`snapshot` data; ``False`` if unusable.

        Checks are rebuilt from the factory (so registry changes apply) and
        given their saved state by name; a check with no saved state starts
        fresh, saved state of a check that no longer exists is ignored.
        """
        try:
            if snapshot.get("v") != SNAPSHOT_VERSION:
                raise ValueError(f"snapshot version {snapshot.get('v')!r}")
            sid = str(snapshot["sensor_id"])
            sensor = self._sensor_for(sid, str(snapshot["kind"]), str(snapshot["district"]))
            learnt = snapshot.get("interval_s")
            if "interval_s" not in sensor.model_fields_set and isinstance(learnt, (int, float)) and learnt > 0:
                sensor = sensor.model_copy(update={"interval_s": float(learnt)})  # learnt before the snapshot
            st = self._new_state(sensor)
            saved = snapshot.get("checks") or {}
            specs = snapshot.get("specs") or {}
            for check in st.checks:  # a check whose rule changed since the snapshot starts fresh
                if check.name in saved and specs.get(check.name, _spec(check)) == _spec(check):
                    check.restore(saved[check.name])
            names = {c.name for c in st.checks}
            st.episodes = {n: Episode(**e) for n, e in (snapshot.get("episodes") or {}).items() if n in names}
            st.position = st.floor = snapshot.get("position")
            st.last_ts = snapshot.get("last_ts")
        except Exception as exc:  # a bad snapshot must not stop the worker: start that sensor fresh
            log.error("ignoring unusable snapshot of sensor %r: %s: %s",
                      snapshot.get("sensor_id") if isinstance(snapshot, dict) else None, type(exc).__name__, exc)
            return False
        self._states[sid] = st
        return True
