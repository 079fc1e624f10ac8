"""A running worker applies a changed rules file: unchanged checks keep their state, a bad file is refused."""

from __future__ import annotations

import json
from dataclasses import replace

import pytest

from cityeye.contracts import TOPIC_ALERTS, AlertEvent
from cityeye.sensor_registry import SensorRegistry, load_registry
from detectors.rulebook import parse_rulebook
from simulators import DEMO_REGISTRY
from streams.command import StreamsWorker
from streams.live_rules import LiveRules
from streams.sensor_engine import SensorEngine
from tests.kafka_helpers import wait_until
from tests.test_streams_worker import WL, produce, read_topic, water, water_series

pytestmark = pytest.mark.timeout(120)


def engine_with(rules_path) -> tuple[SensorEngine, LiveRules]:
    live = LiveRules(str(rules_path), load_registry(DEMO_REGISTRY))
    engine = SensorEngine(live.registry, live.checks_for)
    engine.rules_version = live.version
    return engine, live


def test_changed_rules_keep_the_state_of_unchanged_checks_and_resolve_removed_ones(tmp_path, caplog):
    rules = tmp_path / "rules.yaml"
    rules.write_text("kinds:\n  water_level:\n    rate_of_rise: {rate_per_hour: 0.3}\n")
    engine, live = engine_with(rules)
    first = live.version
    # rising 0.6 m/h below the warning level: rate of rise and forecast fire
    events = [e for r in water_series([4.0 + 0.01 * i for i in range(45)]) for e in engine.process(r)]
    assert {e.rule for e in events} >= {"water_level.rate_of_rise", "water_level.forecast"}
    assert {e.labels["rules_version"] for e in events} == {first}
    before = {c.name: c for c in engine.state(WL).checks}

    rules.write_text("kinds:\n  water_level:\n    rate_of_rise: {rate_per_hour: 0.5}\n    forecast: {enabled: false}\n")
    assert live.reload() and live.version != first
    engine.rules_version = live.version
    events, changed = engine.rebuild_checks()
    assert changed == {WL}
    after = {c.name: c for c in engine.state(WL).checks}
    assert after["water_level.flatline"] is before["water_level.flatline"]  # unchanged: same object, same state
    assert after["water_level.warning"] is before["water_level.warning"]
    assert after["water_level.rate_of_rise"] is not before["water_level.rate_of_rise"]
    assert after["water_level.rate_of_rise"].rate_per_hour == 0.5
    assert "water_level.forecast" not in after
    [resolved] = events
    assert (resolved.rule, resolved.state, resolved.labels["rules_version"]) == (
        "water_level.forecast", "resolved", live.version)
    assert "rule water_level.forecast removed" in resolved.message
    # the changed rule's open episode continues: still firing at 0.6 m/h >= 0.5, no new alert id
    assert "water_level.rate_of_rise" in engine.state(WL).episodes

    second = live.version
    rules.write_text("kinds:\n  water_level:\n    rate_of_rise: {rate_per_huor: 0.1}\n")
    assert not live.reload() and live.version == second
    assert "rules file changed but refused" in caplog.text and "rate_per_huor: unknown parameter" in caplog.text
    assert not live.reload()  # the same bad file is not reported again and again


def test_a_snapshot_restores_only_checks_whose_rule_did_not_change(tmp_path):
    rules = tmp_path / "rules.yaml"
    rules.write_text("kinds:\n  water_level:\n    flatline: {repeats: 60}\n")
    engine, live = engine_with(rules)
    for r in water_series([4.0] * 30):
        engine.process(r)
    snap = engine.snapshot(WL)
    rules.write_text("kinds:\n  water_level:\n    flatline: {repeats: 40}\n")
    live.reload()
    fresh = SensorEngine(live.registry, live.checks_for)
    assert fresh.restore(json.loads(json.dumps(snap)))
    checks = {c.name: c for c in fresh.state(WL).checks}
    assert checks["water_level.flatline"].snapshot() != snap["checks"]["water_level.flatline"]  # started fresh
    assert checks["water_level.rate_of_rise"].snapshot() == snap["checks"]["water_level.rate_of_rise"]


def test_a_reload_takes_effect_for_every_sensor_alike_and_keeps_their_states_apart(tmp_path):
    rules = tmp_path / "rules.yaml"
    rules.write_text("kinds:\n  water_level:\n    rate_of_rise: {rate_per_hour: 0.3}\n")
    wl = load_registry(DEMO_REGISTRY).get(WL)
    twin = wl.model_copy(update={"id": "wl-huangpu-twin"})  # the same kind, district, levels and interval
    live = LiveRules(str(rules), SensorRegistry({wl.id: wl, twin.id: twin}))
    engine = SensorEngine(live.registry, live.checks_for)
    for r in water_series([4.0 + 0.01 * i for i in range(45)]):
        engine.process(r)  # the twin has no readings yet
    rules.write_text("kinds:\n  water_level:\n    rate_of_rise: {rate_per_hour: 0.5}\n")
    assert live.reload()
    engine.process(replace(water(4.0, 0), sensor_id=twin.id))
    _, changed = engine.rebuild_checks()
    assert changed == {WL}  # the twin's checks were built under the new rules already
    mine, twins = ({c.name: c for c in engine.state(sid).checks} for sid in (WL, twin.id))
    assert mine["water_level.rate_of_rise"].rate_per_hour == twins["water_level.rate_of_rise"].rate_per_hour == 0.5
    assert mine["water_level.flatline"].snapshot() != twins["water_level.flatline"].snapshot()  # 45 readings vs 1
    assert all(mine[name] is not twins[name] for name in mine)


def test_builtin_checks_carry_their_rule_spec():
    checks = parse_rulebook(None).checks_for(load_registry(DEMO_REGISTRY).get(WL))
    assert all(json.loads(c.rule_spec)["type"] for c in checks)


async def test_a_running_worker_picks_up_a_changed_rules_file(settings, tmp_path):
    rules = tmp_path / "rules.yaml"
    rules.write_text("kinds:\n  water_level:\n    rate_of_rise: {rate_per_hour: 5.0}\n")
    settings = settings.model_copy(update={"rules": str(rules), "rules_check_s": 0.3})
    async with StreamsWorker(settings) as worker:
        runtime = worker.streams.runtime
        v1 = runtime.engine.rules_version
        await produce(settings, water_series([4.0] * 5))
        await wait_until(lambda: runtime.readings >= 5)
        rules.write_text("kinds:\n  water_level:\n    rate_of_rise: {rate_per_hour: 0.3}\n")
        assert await wait_until(lambda: runtime.engine.rules_version != v1, timeout=15)
        # the new threshold is in force: a 0.6 m/h rise now raises a rate-of-rise alert under the new version
        await produce(settings, [water(4.0 + 0.01 * i, 5 + i) for i in range(45)])
        raw = await read_topic(settings, TOPIC_ALERTS,
                               lambda vs: any(AlertEvent.from_json(v).rule == "water_level.rate_of_rise" for v in vs))
    events = [AlertEvent.from_json(v) for v in raw]
    rate = [e for e in events if e.rule == "water_level.rate_of_rise"]
    assert rate and rate[0].labels["rules_version"] == runtime.engine.rules_version != v1
