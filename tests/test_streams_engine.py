"""Unit tests of streams.sensor_engine.SensorEngine: transitions, ids, snapshots (no Kafka)."""

from __future__ import annotations

import json

import pytest

from cityeye.contracts import AlertEvent, Reading, alert_id_for
from cityeye.errors import ValidationError
from cityeye.sensor_registry import Sensor, SensorRegistry, load_registry
from simulators import DEMO_REGISTRY
from detectors.base import Check, Finding, Rule
from streams.clocks import SensorClocks, StreamClock
from streams.sensor_engine import SensorEngine

SENSOR = "wl-huangpu-01"


class Ladder(Check):
    """Test check: severity from fixed levels of ``level_m``, no hysteresis."""

    name = "test.ladder"

    def __init__(self) -> None:
        self._current: dict | None = None

    def process(self, x, t):
        v = x.get("level_m")
        sev = None
        for s, lvl in (("yellow", 4.5), ("orange", 5.2)):
            if v is not None and v >= lvl:
                sev, thr = s, lvl
        self._current = None if sev is None else {"sev": sev, "v": v, "thr": thr}
        return self.tick(t)

    def tick(self, t):
        c = self._current
        if c is None:
            return None
        return Finding(self.name, c["sev"], 0.5, c["v"], c["thr"], f"level {c['v']} >= {c['thr']}", field="level_m")


class Counter(Check):
    """Test check whose finding depends on the whole history (a running count)."""

    name = "test.count"

    def __init__(self) -> None:
        self._n = 0

    def process(self, x, t):
        self._n += 1
        return None if self._n < 3 else Finding(self.name, "blue", 0.1, float(self._n), 3.0, f"{self._n} readings")


class Broken(Check):
    name = "test.broken"

    def process(self, x, t):
        raise RuntimeError("boom")


def ladder_and_counter(sensor):
    return [Ladder(), Counter()]


@pytest.fixture
def registry():
    return load_registry(DEMO_REGISTRY)


def reading(level: float, ts: float, sensor: str = SENSOR, kind: str = "water_level") -> Reading:
    return Reading(sensor_id=sensor, kind=kind, district="huangpu", ts=ts, values={"level_m": level},
                   received_at=ts, mqtt_topic=f"cityeye/huangpu/{kind}/{sensor}")


def ladder_events(engine: SensorEngine, levels: list[float], t0: float = 1000.0) -> list[AlertEvent]:
    out = []
    for i, lvl in enumerate(levels):
        out += [e for e in engine.process(reading(lvl, t0 + 60 * i), position=i) if e.rule == "test.ladder"]
    return out


def test_firing_escalation_deescalation_resolve(registry):
    engine = SensorEngine(registry, checks_factory=lambda s: [Ladder()])
    events = ladder_events(engine, [4.0, 4.6, 4.7, 5.3, 4.8, 4.0])
    assert [(e.state, e.severity) for e in events] == [
        ("firing", "yellow"), ("firing", "orange"), ("firing", "yellow"), ("resolved", "yellow")]
    first = events[0]
    assert first.started_at == 1060.0 and first.value == 4.6 and first.threshold == 4.5
    assert first.alert_id == alert_id_for(SENSOR, "test.ladder", 1060.0)
    assert {e.alert_id for e in events} == {first.alert_id}
    assert {e.started_at for e in events} == {1060.0}
    assert events[1].value == 5.3 and events[1].threshold == 5.2 and events[1].updated_at == 1180.0
    assert events[3].value == 4.8 and events[3].updated_at == 1300.0  # the last value in alert
    assert len({e.event_id for e in events}) == 4
    assert first.district == "huangpu" and first.kind == "water_level"
    assert first.labels["sensor_name"] == "Suzhou Creek at Waibaidu Bridge"


def test_new_episode_gets_new_id(registry):
    engine = SensorEngine(registry, checks_factory=lambda s: [Ladder()])
    events = ladder_events(engine, [4.6, 4.0, 4.6])
    assert [e.state for e in events] == ["firing", "resolved", "firing"]
    assert events[0].alert_id == events[1].alert_id != events[2].alert_id


def test_replay_gives_identical_events(registry):
    levels = [4.0, 4.6, 5.3, 5.0, 4.1, 4.9]
    a = ladder_events(SensorEngine(registry, checks_factory=lambda s: [Ladder()]), levels)
    b = ladder_events(SensorEngine(registry, checks_factory=lambda s: [Ladder()]), levels)
    assert [json.loads(json.dumps(e.__dict__)) for e in a] == [json.loads(json.dumps(e.__dict__)) for e in b]
    assert len(a) == 5


def test_snapshot_restore_continues_the_episode(registry):
    live = SensorEngine(registry, checks_factory=ladder_and_counter)
    for i, lvl in enumerate([4.0, 4.6, 4.7]):
        live.process(reading(lvl, 1000 + 60 * i), position=i)
    snap = json.loads(json.dumps(live.snapshot(SENSOR)))  # survives a JSON round trip
    assert not live.dirty(SENSOR)

    restored = SensorEngine(registry, checks_factory=ladder_and_counter)
    assert restored.restore(snap)
    tail = [(5.3, 3), (4.0, 4)]
    got = [e for lvl, pos in tail for e in restored.process(reading(lvl, 1000 + 60 * pos), position=pos)]
    want = [e for lvl, pos in tail for e in live.process(reading(lvl, 1000 + 60 * pos), position=pos)]
    assert got == want
    ladder = [e for e in got if e.rule == "test.ladder"]
    assert [(e.state, e.severity) for e in ladder] == [("firing", "orange"), ("resolved", "orange")]
    assert ladder[0].alert_id == alert_id_for(SENSOR, "test.ladder", 1060.0)
    # the history-dependent check kept its count: it fires at the 3rd reading overall, not the 3rd after restore
    counts = [e for e in got if e.rule == "test.count"]
    assert counts == [] and restored.state(SENSOR).checks[1]._n == 5


def test_replayed_positions_are_skipped_after_restore(registry):
    engine = SensorEngine(registry, checks_factory=ladder_and_counter)
    for i, lvl in enumerate([4.0, 4.6, 4.7]):
        engine.process(reading(lvl, 1000 + 60 * i), position=10 + i)
    again = SensorEngine(registry, checks_factory=ladder_and_counter)
    again.restore(engine.snapshot(SENSOR))
    assert again.process(reading(4.7, 1120), position=12) == []
    assert again.skipped == 1 and again.state(SENSOR).checks[1]._n == 3
    events = again.process(reading(4.0, 1180), position=13)
    assert [e.state for e in events if e.rule == "test.ladder"] == ["resolved"]


def test_snapshot_policy_counts_readings(registry):
    engine = SensorEngine(registry, checks_factory=lambda s: [Ladder()])
    for i in range(4):
        engine.process(reading(4.0, 1000 + i))
    assert engine.due(SENSOR, 4) and not engine.due(SENSOR, 5)
    engine.snapshot(SENSOR)
    assert not engine.due(SENSOR, 1) and not engine.due("nope", 1)


def test_unusable_snapshot_is_refused_not_raised(registry):
    engine = SensorEngine(registry, checks_factory=ladder_and_counter)
    assert not engine.restore({"v": 999, "sensor_id": SENSOR})
    assert not engine.restore({"v": 1, "sensor_id": SENSOR, "kind": "lava", "district": "x"})
    assert SENSOR not in engine


def test_kind_mismatch_is_a_validation_error(registry):
    engine = SensorEngine(registry, checks_factory=ladder_and_counter)
    with pytest.raises(ValidationError, match="registry says 'water_level'"):
        engine.process(reading(1.0, 1000, kind="weather"))
    with pytest.raises(ValidationError, match="unknown kind"):
        engine.process(reading(1.0, 1000, sensor="x-1", kind="lava"))


def test_unregistered_sensor_gets_checks_without_levels(registry):
    engine = SensorEngine(registry)  # default_checks
    engine.process(reading(9.0, 1000, sensor="wl-unknown-9"))
    names = [c.name for c in engine.state("wl-unknown-9").checks]
    assert "water_level.warning" not in names and "water_level.stale" in names


def test_failing_check_does_not_stop_the_others(registry):
    engine = SensorEngine(registry, checks_factory=lambda s: [Broken(), Ladder()])
    events = engine.process(reading(4.6, 1000))
    assert [e.rule for e in events] == ["test.ladder"] and engine.check_errors == 1


class Rising(Rule):
    """Test rule with ``update`` only: a finding while ``level_m`` is above 3.2."""

    name = "test.rising"

    def update(self, x, t):
        v = x.get("level_m")
        return Finding(self.name, "blue", 0.1, v, 3.2, "high") if v is not None and v > 3.2 else None


class Loud(Rising):
    """A rule with its own ``process``: the engine must call it."""

    name = "test.loud"

    def process(self, x, t):
        return Finding(self.name, "yellow", 0.2, x.get("level_m"), None, "always")


def test_the_engine_runs_each_checks_process_and_a_new_list_of_checks(registry):
    engine = SensorEngine(registry, checks_factory=lambda s: [Rising(), Loud()])
    assert [e.rule for e in engine.process(reading(3.0, 1000))] == ["test.loud"]
    assert [e.rule for e in engine.process(reading(3.5, 1060))] == ["test.rising"]
    patched = Rising()
    patched.process = lambda x, t: Finding("test.rising", "orange", 0.3, 9.0, 3.2, "patched")
    engine.state(SENSOR).checks = [patched]  # a new list of checks, as a rules reload makes
    events = engine.process(reading(3.4, 1120))
    assert [(e.rule, e.severity, e.state) for e in events] == [("test.rising", "orange", "firing")]


def test_stale_tick_fires_and_reading_resolves_with_deterministic_start(registry):
    engine = SensorEngine(registry)  # default checks: stale after 5 x 60 s
    engine.process(reading(3.0, 1000.0))
    assert engine.tick(1200.0) == []
    late = engine.tick(1377.0)
    assert [(e.rule, e.state) for e in late] == [("water_level.stale", "firing")]
    assert late[0].started_at == 1300.0  # last seen + 5 intervals, whatever the tick's phase
    assert late[0].alert_id == alert_id_for(SENSOR, "water_level.stale", 1300.0)
    assert engine.dirty(SENSOR)
    back = engine.process(reading(3.0, 1400.0))
    assert [(e.rule, e.state, e.alert_id) for e in back] == [("water_level.stale", "resolved", late[0].alert_id)]


def test_default_checks_warning_levels_on_the_demo_sensor(registry):
    engine = SensorEngine(registry)
    events = []
    t = 0.0
    for level in [4.0] * 3 + [4.6] * 4 + [5.3] * 4 + [4.0] * 4:
        t += 60.0
        events += [e for e in engine.process(reading(level, t)) if e.rule == "water_level.warning"]
    assert [(e.state, e.severity) for e in events] == [
        ("firing", "yellow"), ("firing", "orange"), ("resolved", "orange")]
    assert events[0].threshold == 4.5 and events[1].threshold == 5.2
    assert len({e.alert_id for e in events}) == 1


def test_stream_clock_moves_with_wall_time():
    now = [100.0]
    clock = StreamClock(lambda: now[0])
    assert clock.now() is None
    clock.observe(5000.0)
    now[0] = 130.0
    assert clock.now() == 5030.0
    clock.observe(4000.0)  # an older reading does not move the clock back
    assert clock.now() == 5030.0


def test_stale_is_judged_on_each_sensors_own_time_not_its_partitions():
    """Two gauges replayed from different years in one partition: neither is stale while both report."""
    wall = [0.0]
    clocks = SensorClocks(lambda: wall[0])
    registry = load_registry(DEMO_REGISTRY)
    engine = SensorEngine(registry)
    old, new = "wl-huangpu-01", "wl-minhang-01"
    t_old, t_new = 1_420_070_400.0, 1_577_836_800.0  # 2015 and 2020, one reading a minute each
    events = []
    for i in range(30):
        for sid, t0 in ((old, t_old), (new, t_new)):
            s = registry.get(sid)
            r = Reading(sid, s.kind, s.district, t0 + 60 * i, {"level_m": 3.0 + 0.001 * i}, t0 + 60 * i, "")
            events += engine.process(r)
            clocks.observe("p0", sid, r.ts)
        wall[0] += 0.1  # replayed fast
        for sid in (old, new):
            events += engine.tick(clocks.now(sid), [sid])
    assert [e for e in events if e.rule.endswith("stale")] == []
    assert clocks.now(old) < t_new - 1e8  # the 2015 gauge is not judged on the 2020 gauge's clock
    # the 2015 gauge stops; the 2020 one goes on: the partition's pace decides when the first is stale
    for i in range(30, 40):
        s = registry.get(new)
        engine.process(Reading(new, s.kind, s.district, t_new + 60 * i, {"level_m": 3.0}, t_new + 60 * i, ""))
        clocks.observe("p0", new, t_new + 60 * i)
        wall[0] += 0.1
        events += engine.tick(clocks.now(old), [old]) + engine.tick(clocks.now(new), [new])
    stale = [(e.sensor_id, e.state) for e in events if e.rule.endswith("stale")]
    assert stale == [(old, "firing")]
    clocks.drop("p0")
    assert clocks.now(old) is None


def test_a_partition_wide_clock_would_call_the_older_gauge_stale():
    """The failure SensorClocks fixes: one clock per partition runs on the newest timestamps seen."""
    wall = [0.0]
    clock = StreamClock(lambda: wall[0])
    registry = load_registry(DEMO_REGISTRY)
    engine = SensorEngine(registry)
    events = []
    for i in range(10):
        for sid, t0 in (("wl-huangpu-01", 1_420_070_400.0), ("wl-minhang-01", 1_577_836_800.0)):
            s = registry.get(sid)
            events += engine.process(Reading(sid, s.kind, s.district, t0 + 60 * i, {"level_m": 3.0}, t0 + 60 * i, ""))
            clock.observe(t0 + 60 * i)
        events += engine.tick(clock.now())
    stale = [(e.sensor_id, e.state) for e in events if e.rule.endswith("stale")]
    assert {sid for sid, _ in stale} == {"wl-huangpu-01"}  # raised and resolved over and over while it reports
    assert stale.count(("wl-huangpu-01", "firing")) == 10


def test_a_gauge_without_a_registry_interval_gets_its_interval_learnt_and_its_rules_sized_by_it():
    registry = SensorRegistry({"g": Sensor(id="g", kind="water_level", district="d", lat=0.0, lon=0.0,
                                           levels={"warning_m": 4.5})})  # no interval_s: 60 s until learnt
    engine = SensorEngine(registry)
    t0 = 1_800_000_000.0

    def reading(i: int, level: float) -> Reading:
        return Reading("g", "water_level", "d", t0 + 900.0 * i, {"level_m": level}, t0 + 900.0 * i, "")

    for i in range(9):
        engine.process(reading(i, 3.0))
    st = engine.state("g")
    assert st.sensor.interval_s == 900.0
    checks = {c.name: c for c in st.checks}
    assert checks["water_level.stale"].expected_interval_s == 900.0
    assert checks["water_level.warning"].min_duration_s == 0.0  # a 2-minute hold is one reading at 15 minutes
    # so the warning level fires on the first reading above it, not one reading (15 min) late
    assert [(e.rule, e.severity) for e in engine.process(reading(9, 4.6)) if e.rule == "water_level.warning"] == [
        ("water_level.warning", "yellow")]
    # the learnt interval survives a restart through the snapshot
    fresh = SensorEngine(registry)
    assert fresh.restore(json.loads(json.dumps(engine.snapshot("g"))))
    assert fresh.state("g").sensor.interval_s == 900.0 and fresh.state("g").learner is None


def test_a_registry_interval_is_not_second_guessed():
    engine = SensorEngine(load_registry(DEMO_REGISTRY))
    s = load_registry(DEMO_REGISTRY).get("wl-huangpu-01")
    for i in range(12):
        engine.process(Reading(s.id, s.kind, s.district, 1_800_000_000.0 + 900.0 * i, {"level_m": 3.0},
                               1_800_000_000.0, ""))
    assert engine.state(s.id).sensor.interval_s == s.interval_s and engine.state(s.id).learner is None
