"""Alert lifecycle, silences, inhibition, routing, grouping and escalation (engine, fake clock)."""

from __future__ import annotations

import json
from dataclasses import FrozenInstanceError, asdict
from datetime import datetime
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given, settings as hsettings, strategies as st

from alerts.config import load_alerting_config, parse_alerting_config
from alerts.model import NOTIFIED_FIELDS, Alert, AlertSnapshot
from alerts.pipeline.dispatch_engine import ActionConflict, Engine
from alerts.pipeline.lifecycle import flap_ratio
from alerts.notification import Notification
from alerts.pipeline.matchers import Matcher
from alerts.pipeline.silence import MaintenanceWindow, Silence
from alerts.runtime.store import Store
from cityeye.contracts import decode_alert_event as decode_event
from cityeye.errors import ConfigError
from tests.alerting_helpers import config, event


def outbox(store: Store) -> list[Notification]:
    rows = []
    for r in store.outbox_receivers():
        rows += store.outbox_due(r, float("inf"), limit=100_000)
    return [Notification.from_dict(json.loads(r.body)) for r in rows]


def drain(store: Store) -> list[Notification]:
    """Outbox contents, then mark them delivered (as the delivery worker would)."""
    notes = outbox(store)
    with store.transaction():
        for n in notes:
            store.mark_delivered(n.id, n.receiver, 1, 0.0)
    return notes


def make(tmp_path, cfg=None) -> tuple[Engine, Store]:
    """An engine over a store in ``tmp_path`` (``None``: an in-memory store, for speed)."""
    store = Store(tmp_path / "s.sqlite" if tmp_path is not None else ":memory:")
    return Engine(cfg or config(), store), store


def step(engine: Engine, ev=None, now: float = 0.0) -> None:
    with engine.store.transaction():
        if ev is not None:
            engine.apply_event(ev, now)
        engine.tick(now)


def test_raise_escalate_deescalate_resolve_is_one_alert(tmp_path):
    engine, store = make(tmp_path)
    step(engine, event("g1", severity="yellow"), 1)
    step(engine, event("g1", severity="red", updated_at=1001), 2)
    step(engine, event("g1", severity="orange", updated_at=1002), 3)
    assert len(engine.active) == 1
    alert = next(iter(engine.active.values()))
    assert [e.action for e in alert.timeline] == ["raised", "escalated", "de-escalated"]
    step(engine, event("g1", state="resolved", updated_at=1003), 4)
    assert engine.active == {}
    stored = engine.get(alert.alert_id)
    assert stored.state == "resolved" and stored.ended_at == 4
    notes = drain(store)
    assert [n.reason for n in notes] == ["new", "update", "update", "resolved"]
    assert notes[-1].status == "resolved"


def test_keep_firing_for_delays_resolve_and_refire_cancels(tmp_path):
    engine, store = make(tmp_path, config(timings={"keep_firing_for": 60}))
    step(engine, event("g1"), 0)
    step(engine, event("g1", state="resolved", updated_at=1001), 10)
    step(engine, None, 69)
    assert len(engine.active) == 1, "resolved before keep_firing_for elapsed"
    step(engine, event("g1", updated_at=1002), 69.5)
    step(engine, None, 200)
    assert len(engine.active) == 1, "refire did not cancel the pending resolve"
    step(engine, event("g1", state="resolved", updated_at=1003), 300)
    step(engine, None, 360)
    assert engine.active == {}


def test_replayed_event_is_applied_once(tmp_path):
    engine, _ = make(tmp_path)
    ev = event("g1", severity="red")
    step(engine, ev, 0)
    step(engine, ev, 1)
    assert [e.action for e in next(iter(engine.active.values())).timeline] == ["raised"]


def test_redelivered_events_after_resolution_do_not_raise_it_again(tmp_path):
    """At-least-once workers may resend an episode's events after it resolved."""
    engine, store = make(tmp_path)
    first = event("g1", severity="yellow")
    up = event("g1", severity="orange", updated_at=1001)
    step(engine, first, 0)
    step(engine, up, 1)
    step(engine, event("g1", state="resolved", updated_at=1002), 2)
    assert engine.active == {}
    before = len(drain(store))
    step(engine, first, 3)   # a crashed worker's successor sends the episode again
    step(engine, up, 4)
    assert engine.active == {}, "a redelivered event re-raised a resolved alert"
    assert drain(store) == []
    assert before == 3  # new, update, resolved


def test_new_firing_after_a_manual_resolve_raises_a_new_alert(tmp_path):
    engine, store = make(tmp_path)
    step(engine, event("g1", severity="yellow"), 0)
    alert_id = next(iter(engine.active.values())).alert_id
    with store.transaction():
        engine.resolve(alert_id, "officer-li", 5)
    step(engine, event("g1", severity="red", updated_at=1500), 6)  # the sensor escalates
    (alert,) = engine.active.values()
    assert alert.alert_id != alert_id and alert.severity == "red"


def test_decode_event_rejects_hostile_input():
    good = event("g1")
    raw = json.dumps(good.__dict__).encode()
    assert decode_event(raw).alert_id == good.alert_id
    for bad, why in [(b"\xff\xfe", "not JSON"), (b"[1]", "JSON object"),
                     (raw.replace(b'"orange"', b'"purple"'), "severity"),
                     (raw.replace(b'"updated_at": 1000.0', b'"updated_at": "soon"'), "updated_at"),
                     (raw.replace(b'"sensor_id": "g1"', b'"sensor_id": 7'), "sensor_id")]:
        with pytest.raises(ValueError, match=why):
            decode_event(bad)


def test_grouping_flood_gives_one_notification_with_summary(tmp_path):
    engine, store = make(tmp_path, config(route={"group_wait": 30, "group_interval": 60}))
    for i in range(10):
        step(engine, event(f"wl-{i:02d}", severity="red" if i < 2 else "orange"), i)
    assert outbox(store) == []  # still in group_wait
    step(engine, None, 30)
    notes = drain(store)
    assert len(notes) == 1 and len(notes[0].alerts) == 10
    assert notes[0].summary.startswith("[FIRING:10]") and "red 2, orange 8" in notes[0].summary
    step(engine, event("wl-10"), 40)
    step(engine, None, 50)
    assert outbox(store) == []  # group_interval not yet over
    step(engine, None, 90)
    assert [len(n.alerts) for n in drain(store)] == [11]


def test_repeat_interval_resends_unchanged_group(tmp_path):
    engine, store = make(tmp_path, config(route={"repeat_interval": 100}))
    step(engine, event("g1"), 0)
    assert [n.reason for n in drain(store)] == ["new"]
    step(engine, None, 50)
    assert drain(store) == []
    step(engine, None, 101)
    assert [n.reason for n in drain(store)] == ["repeat"]


def test_routing_continue_and_inherited_timings(tmp_path):
    cfg = config(["desk", "flood", "traffic"], route={"group_wait": 5, "routes": [
        {"match": {"kind": "water_level"}, "receiver": "flood", "continue": True},
        {"match_re": {"severity": "orange|red"}, "receiver": "traffic", "group_by": ["district"]}]})
    engine, store = make(tmp_path, cfg)
    routes = engine.routes.match({"kind": "water_level", "severity": "red"})
    assert [r.receiver for r in routes] == ["flood", "traffic"] and routes[0].group_wait == 5
    assert [r.receiver for r in engine.routes.match({"kind": "weather", "severity": "blue"})] == ["desk"]
    step(engine, event("g1", severity="red"), 0)
    step(engine, None, 5)
    assert sorted(n.receiver for n in drain(store)) == ["flood", "traffic"]


def test_silence_records_but_does_not_notify(tmp_path):
    engine, store = make(tmp_path)
    with store.transaction():
        engine.add_silence(Silence([Matcher("sensor", "=", "g1")], 0, 100, "ops", "gauge cleaning"), 0)
    step(engine, event("g1"), 1)
    step(engine, event("g2"), 1)
    notes = drain(store)
    assert [[a.sensor_id for a in n.alerts] for n in notes] == [["g2"]]
    g1 = next(a for a in engine.active.values() if a.sensor_id == "g1")
    assert g1.status == "silenced" and "silenced" in [e.action for e in g1.timeline]
    step(engine, None, 100)  # silence over: g1 joins the notification
    assert sorted(a.sensor_id for a in drain(store)[0].alerts) == ["g1", "g2"]


def test_maintenance_window_tuesday_night_shanghai():
    cfg = parse_alerting_config({"receivers": [{"name": "d", "type": "webhook", "url": "http://x"}],
                                 "route": {"receiver": "d"}, "maintenance_windows": [
        {"name": "w", "matchers": ["sensor=g1"], "weekdays": ["tue"], "start": "23:00", "end": "01:00"}]})
    w = MaintenanceWindow(cfg.maintenance_windows[0])
    tz = ZoneInfo("Asia/Shanghai")
    at = lambda *a: datetime(*a, tzinfo=tz).timestamp()  # noqa: E731
    assert w.matches({"sensor": "g1"}, at(2026, 12, 1, 23, 30))  # Tuesday
    assert w.matches({"sensor": "g1"}, at(2026, 12, 2, 0, 30))  # continues after midnight
    assert not w.matches({"sensor": "g1"}, at(2026, 12, 2, 1, 0))
    assert not w.matches({"sensor": "g1"}, at(2026, 12, 2, 23, 30))  # Wednesday
    assert not w.matches({"sensor": "g2"}, at(2026, 12, 1, 23, 30))


def test_matchers_regex_anchored_and_negative():
    assert Matcher("rule", "=~", "stale").matches({"rule": "stale"})
    assert not Matcher("rule", "=~", "stale").matches({"rule": "not_stale_x"})
    assert Matcher("rule", "!~", ".*stale.*").matches({"rule": "level"})
    assert Matcher("district", "!=", "pudong").matches({})


def test_inhibition_stale_and_red(tmp_path):
    cfg = config(inhibit_rules=load_alerting_config().model_dump()["inhibit_rules"])
    engine, store = make(tmp_path, cfg)
    step(engine, event("g1", rule="stale", severity="blue"), 0)
    step(engine, event("g1", rule="level_warning", severity="orange"), 1)
    level = engine.active["g1|level_warning"]
    assert level.status == "inhibited" and level.inhibited_by == [engine.active["g1|stale"].alert_id]
    step(engine, event("g2", severity="red"), 2)
    step(engine, event("g3", severity="yellow"), 2)
    assert engine.active["g3|level_warning"].status == "inhibited"
    step(engine, event("g2", state="resolved", severity="red", updated_at=1001), 3)
    assert engine.active["g3|level_warning"].status == "active"
    notified = {(a.sensor_id, a.rule) for n in drain(store) for a in n.alerts}
    assert ("g1", "level_warning") not in notified and ("g3", "level_warning") in notified


def test_escalation_reminders_and_ack(tmp_path):
    cfg = config(["desk", "district", "hq"], route={"escalation": ["district", "hq"]},
                 timings={"escalate_after": 60, "reminder_every": 30})
    engine, store = make(tmp_path, cfg)
    step(engine, event("g1", severity="orange"), 0)
    step(engine, event("g2", severity="yellow"), 0)
    drain(store)
    step(engine, None, 59)
    assert drain(store) == []
    step(engine, None, 60)
    notes = drain(store)
    assert [(n.receiver, n.reason) for n in notes] == [("district", "escalation")]
    assert [a.sensor_id for a in notes[0].alerts] == ["g1"]
    step(engine, None, 90)
    assert sorted((n.receiver, n.reason) for n in drain(store)) == [("desk", "reminder"), ("district", "reminder")]
    step(engine, None, 120)
    assert [(n.receiver, n.reason) for n in drain(store)] == [("hq", "escalation")]
    with store.transaction():
        engine.acknowledge(engine.active["g1|level_warning"].alert_id, "officer-li", 121)
    with pytest.raises(ActionConflict):
        engine.acknowledge(engine.active["g1|level_warning"].alert_id, "x", 122)
    for t in (150, 200, 400):
        step(engine, None, t)
    assert drain(store) == []


def test_state_survives_restart(tmp_path):
    engine, store = make(tmp_path, config(route={"group_wait": 30}))
    step(engine, event("g1"), 0)
    store.close()
    engine2, store2 = make(tmp_path, config(route={"group_wait": 30}))
    assert list(engine2.active) == ["g1|level_warning"]
    step(engine2, None, 30)
    assert [n.reason for n in drain(store2)] == ["new"]


def test_config_errors_name_the_field_path():
    with pytest.raises(ConfigError, match=r"route\.routes\.0\.group_wait: invalid duration 'soon'"):
        config(route={"routes": [{"group_wait": "soon"}]})
    with pytest.raises(ConfigError, match=r"route\.escalation\.0: unknown receiver 'nobody'"):
        config(route={"escalation": ["nobody"]})
    with pytest.raises(ConfigError, match=r"maintenance_windows\.0\.timezone"):
        config(maintenance_windows=[{"name": "w", "matchers": ["a=b"], "start": "01:00", "end": "02:00",
                                     "timezone": "Mars/Olympus"}])


# --- property tests over random event sequences -----------------------------------------

events_st = st.lists(st.tuples(st.sampled_from(["g1", "g2"]), st.sampled_from(["level", "stale"]),
                               st.sampled_from(["firing", "resolved"]),
                               st.sampled_from(["blue", "yellow", "orange", "red"]),
                               st.floats(0.0, 40.0)), max_size=40)


@hsettings(max_examples=100, deadline=None)
@given(seq=events_st)
def test_property_one_active_alert_per_sensor_rule_and_no_early_resolve(seq):
    keep = 30.0
    engine, store = make(None, config(timings={"keep_firing_for": keep}))
    now = 0.0
    for i, (sensor, rule, state, sev, gap) in enumerate(seq):
        now += gap
        step(engine, event(sensor, state, sev, rule=rule, updated_at=1000 + i), now)
        keys = [a.key for a in engine.active.values()]
        assert len(keys) == len(set(keys))
        rows = store.db.execute("SELECT alert_key, COUNT(*) FROM alerts WHERE active=1 GROUP BY alert_key").fetchall()
        assert all(n == 1 for _, n in rows)
        for a in engine.active.values():
            assert a.state == "firing"
        for d in store.resolved_alerts(10_000):
            assert d["ended_at"] is not None
            started_pending = [e["ts"] for e in d["timeline"] if e["action"] == "resolve_pending"]
            assert started_pending and d["ended_at"] - started_pending[-1] >= keep - 1e-9


@hsettings(max_examples=40, deadline=None)
@given(cycles=st.integers(5, 40), gap=st.floats(0.5, 4.9))
def test_property_flapping_gives_flapping_state_not_a_storm(cycles, gap):
    engine, store = make(None, config(timings={"keep_firing_for": 10}))
    now = 0.0
    for i in range(cycles):
        step(engine, event("g1", updated_at=1000 + 2 * i), now)
        now += gap
        step(engine, event("g1", "resolved", updated_at=1001 + 2 * i), now)
        now += gap
    alert = engine.active["g1|level_warning"]
    assert alert.status == "flapping"
    notes = drain(store)
    assert [n.reason for n in notes].count("flapping") == 1
    assert len(notes) <= 3, [n.reason for n in notes]


def test_flap_ratio_weights_recent_changes():
    assert flap_ratio([1, 1, 1, 1]) == 0
    assert flap_ratio([1, 0, 1, 0]) == 1
    assert flap_ratio([1, 1, 1, 0]) > flap_ratio([1, 0, 0, 0])


def test_registry_gives_notifications_sensor_names_and_coordinates(tmp_path):
    """The name comes with the event (the stream worker's registry), the position from the dispatcher's."""
    from cityeye.sensor_registry import load_registry

    registry = load_registry(Path(__file__).resolve().parent.parent / "simulators" / "demo_registry.yaml")
    engine = Engine(config(), Store(tmp_path / "s.sqlite"), registry)
    name = registry.get("wl-huangpu-01").name
    step(engine, event("wl-huangpu-01", district="huangpu", sensor_name=name), 0)
    snap = drain(engine.store)[0].alerts[0]
    assert snap.sensor_name == "Suzhou Creek at Waibaidu Bridge" and (snap.lat, snap.lon) == (31.2437, 121.4860)


def test_store_prunes_old_resolved_alerts_and_log(tmp_path):
    engine, store = make(tmp_path)
    step(engine, event("g1"), 0)
    step(engine, event("g1", "resolved", updated_at=1001), 1)
    drain(store)
    assert store.resolved_alerts() and store.delivered_count() == 2
    with store.transaction():
        store.db.execute("UPDATE alerts SET updated = 5")
        store.db.execute("UPDATE notification_log SET delivered = 5")
        assert store.prune(10) == 3
    assert store.resolved_alerts() == [] and store.delivered_count() == 0


def test_dispatcher_command_refuses_a_bad_alerting_file(tmp_path, caplog):
    import argparse

    from alerts.command import run

    bad = tmp_path / "alerting.yaml"
    bad.write_text("receivers: [{name: d, type: webhook, url: 'http://x'}]\nroute: {receiver: d, group_wait: soon}\n")
    assert run(argparse.Namespace(config=None, alerting=str(bad), api_port=None)) == 2
    assert "route.group_wait: invalid duration 'soon'" in caplog.text


def test_example_config_loads_and_builds_its_notifiers():
    from alerts.dispatcher import build_notifiers

    cfg = load_alerting_config()
    assert set(build_notifiers(cfg)) == {r.name for r in cfg.receivers}
    engine_routes = Engine(cfg, Store(":memory:")).routes
    assert [r.escalation for r in engine_routes.match({"kind": "water_level", "severity": "red"})] == [
        ["district-office", "flood-control-hq"]]
    assert [r.group_by for r in engine_routes.match({"kind": "system", "rule": "receiver_failing"})] == [["rule"]]


#: an outbox row as the dispatcher stored it at commit 09c1cff (before the alert shape was unified)
STORED_ROW = (
    '{"receiver":"hq","group_key":"0.1:{district=huangpu}","group_labels":{"district":"huangpu"},"version":389002,'
    '"status":"firing","reason":"repeat","alerts":[{"alert_id":"ba50404c1676c08334890010","sensor_id":"g3",'
    '"kind":"water_level","district":"huangpu","rule":"rate","severity":"orange","state":"firing",'
    '"started_at":1002.0,"updated_at":1046.0,"value":6.0,"threshold":4.0,"message":"g3 firing orange",'
    '"sensor_name":"Gauge three","lat":33.0,"lon":123.0,"acknowledged_by":"li","assignee":null,"ended_at":null}],'
    '"created_at":530.0,"summary":"[FIRING:1] district=huangpu: 1 firing (orange 1); sensors: Gauge three",'
    '"previous_ids":["1aec9f6182e8fd2772b714022090dcab"],"id":"7c28af647cc0ffee6f66584f57c8d49b"}')


def test_stored_notification_rows_read_back_and_serialise_unchanged():
    note = Notification.from_dict(json.loads(STORED_ROW))
    assert note.alerts[0].sensor_name == "Gauge three" and note.alerts[0].acknowledged_by == "li"
    assert json.dumps(note.to_dict(), separators=(",", ":"), ensure_ascii=False) == STORED_ROW


def test_a_notification_shows_a_frozen_copy_of_the_alert():
    alert = Alert.from_event(event("g1", sensor_name="Gauge one"))
    snap = alert.snapshot()
    assert tuple(asdict(snap)) == NOTIFIED_FIELDS and tuple(asdict(alert))[:len(NOTIFIED_FIELDS)] == NOTIFIED_FIELDS
    assert all(getattr(snap, name) == getattr(alert, name) for name in NOTIFIED_FIELDS)
    assert snap.sensor_name == "Gauge one" and not isinstance(alert, AlertSnapshot)
    with pytest.raises(FrozenInstanceError):
        snap.severity = "red"  # type: ignore[misc]
    alert.severity = "red"
    assert snap.severity == "orange"
