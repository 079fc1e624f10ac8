"""Simulators: determinism, the flood and rainstorm they promise, labels, and a real publish."""

from __future__ import annotations

import asyncio
import csv
import json
from collections import defaultdict
from pathlib import Path

import pytest
import yaml
from hypothesis import given, settings as hsettings, strategies as st

from launch.cli import main as cli_main
from cityeye.contracts import TOPIC_DEADLETTER, Reading, readings_topic
from cityeye.reading_records import readings_in
from cityeye.sensor_registry import load_registry
from ingest.gateway import Gateway
from ingest.readback import read_until
from ingest.validation import Limits, validate_message
from simulators.common import Clock, TippingBucket, episodes, trailing_sums
from simulators.simulation import encode_messages, resolve_start, run_simulation, simulate
from simulators.water_level import levels_of

REGISTRY = load_registry(Path(__file__).resolve().parent.parent / "simulators" / "demo_registry.yaml")
START = 1_780_000_000.0


def series(readings, sensor_id, field):
    rows = [r for r in readings if r.sensor_id == sensor_id]
    return [r.ts for r in rows], [r.values[field] for r in rows]


def labels_of(labels, sensor_id, label):
    return [(lab.start, lab.end) for lab in labels if lab.sensor_id == sensor_id and lab.label == label]


def test_same_seed_gives_byte_identical_payloads_and_another_seed_does_not():
    def payloads(seed):
        readings, labels = simulate(REGISTRY, "all", seed, Clock(START, 12))
        return encode_messages(readings, batch=4), labels
    first, labels_a = payloads(11)
    again, labels_b = payloads(11)
    other, _ = payloads(12)
    assert first == again and labels_a == labels_b
    assert [m[2] for m in first] != [m[2] for m in other]
    assert len(first) == len(other)


def test_flood_crosses_the_warning_level_and_reaches_the_guaranteed_level():
    readings, labels = simulate(REGISTRY, "flood", 7, Clock(START, 24))
    gauges = REGISTRY.by_kind("water_level")
    assert gauges
    for gauge in gauges:
        levels = levels_of(gauge)
        times, level = series(readings, gauge.id, "level_m")
        assert level[0] < levels["warning_m"] and max(level) >= levels["guaranteed_m"]
        first_above = next(t for t, v in zip(times, level) if v >= levels["warning_m"])
        [(start, end)] = labels_of(labels, gauge.id, "flood above warning level")
        assert start == first_above and end > start
        assert labels_of(labels, gauge.id, "flood above guaranteed level")
        assert level[-1] < levels["warning_m"]  # and the river recedes


def test_rainstorm_meets_the_orange_signal_at_every_station():
    readings, labels = simulate(REGISTRY, "flood", 7, Clock(START, 24))
    for station in REGISTRY.by_kind("weather"):
        times, rain = series(readings, station.id, "rain_mm")
        three_hour = trailing_sums(times, rain, 3 * 3600)
        assert 50 <= max(three_hour) < 100
        [(start, end)] = labels_of(labels, station.id, "rainstorm orange")
        assert start == next(t for t, s in zip(times, three_hour) if s >= 50)
        assert labels_of(labels, station.id, "rainstorm yellow") and labels_of(labels, station.id, "rainstorm blue")
        assert not labels_of(labels, station.id, "rainstorm red")
        _, humidity = series(readings, station.id, "humidity_pct")
        assert max(humidity) > 90


def test_normal_scenario_has_no_events():
    readings, labels = simulate(REGISTRY, "normal", 7, Clock(START, 48))
    assert labels == []
    for gauge in REGISTRY.by_kind("water_level"):
        assert max(series(readings, gauge.id, "level_m")[1]) < levels_of(gauge)["warning_m"] - 0.5
    for station in REGISTRY.by_kind("weather"):
        times, rain = series(readings, station.id, "rain_mm")
        assert max(trailing_sums(times, rain, 12 * 3600)) < 50
    for detector in REGISTRY.by_kind("traffic"):
        assert min(series(readings, detector.id, "speed_kmh")[1]) > 30


def test_traffic_incident_collapses_speed_and_jumps_occupancy_only_in_all():
    readings, labels = simulate(REGISTRY, "all", 3, Clock(START, 24))
    for detector in REGISTRY.by_kind("traffic"):
        [(start, end)] = labels_of(labels, detector.id, "incident")
        rows = [r for r in readings if r.sensor_id == detector.id]
        inside = [r.values for r in rows if start <= r.ts <= end]
        before = [r.values for r in rows if start - 3600 <= r.ts < start]
        assert 40 <= len(inside) <= 61
        assert max(v["speed_kmh"] for v in inside) < 15 < min(v["speed_kmh"] for v in before)
        assert min(v["occupancy_pct"] for v in inside) >= 60 > max(v["occupancy_pct"] for v in before)
    _, flood_labels = simulate(REGISTRY, "flood", 3, Clock(START, 24))
    assert not [lab for lab in flood_labels if lab.label == "incident"]


def test_default_traffic_check_finds_the_incident_at_its_start_and_nothing_else():
    """The default anomaly detector (threshold 0.9) on a simulated day of traffic."""
    from detectors.default_checks import default_checks

    readings, labels = simulate(REGISTRY, "all", 3, Clock(START, 24))
    for detector in REGISTRY.by_kind("traffic"):
        [(start, _end)] = labels_of(labels, detector.id, "incident")
        [check] = [c for c in default_checks("traffic", {}) if c.name == "traffic.speed_anomaly"]
        found = [r.ts for r in readings if r.sensor_id == detector.id and check.process(r.values, r.ts) is not None]
        assert found == [start], detector.id  # one finding, at the incident's first reading


def test_daily_traffic_profile_has_rush_hours():
    readings, _ = simulate(REGISTRY, "normal", 7, Clock(START, 24))
    by_hour = defaultdict(list)
    for r in readings:
        if r.sensor_id == "tr-jingan-01":
            by_hour[int(((r.ts / 3600) + 8) % 24)].append(r.values["flow_vph"])
    mean = {h: sum(v) / len(v) for h, v in by_hour.items()}
    assert mean[8] > 2 * mean[3] and mean[18] > 2 * mean[3]


@hsettings(max_examples=25, deadline=None)
@given(seed=st.integers(0, 10 ** 6), duration_h=st.sampled_from([1.0, 2.0, 6.0, 30.0]))
def test_flood_promises_hold_for_any_seed_and_duration(seed, duration_h):
    readings, labels = simulate(REGISTRY, "all", seed, Clock(START, duration_h))
    for gauge in REGISTRY.by_kind("water_level"):
        assert max(series(readings, gauge.id, "level_m")[1]) >= levels_of(gauge)["guaranteed_m"]
    for station in REGISTRY.by_kind("weather"):
        times, rain = series(readings, station.id, "rain_mm")
        assert max(trailing_sums(times, rain, 3 * 3600)) >= 50
    assert {lab.label for lab in labels} >= {"flood above warning level", "rainstorm orange", "incident"}


def test_every_simulated_message_passes_the_gateway_validation():
    duration = 24.0
    start = resolve_start(None, speed=600, duration_h=duration, now=START)
    readings, _ = simulate(REGISTRY, "all", 5, Clock(start, duration))
    messages = encode_messages(readings, batch=7)
    outcomes = [o for _, topic, payload in messages for o in validate_message(payload, topic, REGISTRY, START, Limits())]
    assert all(isinstance(o, Reading) for o in outcomes), [o for o in outcomes if not isinstance(o, Reading)][:3]
    assert len(outcomes) == len(readings)
    assert any(p.startswith(b"[") for _, _, p in messages)  # weather stations batched
    assert any(b'"ts":17' in p for _, t, p in messages if "/traffic/" in t)  # traffic stamps epoch ms


def test_resolve_start():
    assert resolve_start(123.0, 600, 24) == 123.0
    assert resolve_start(None, 1, 24, now=START + 10) == START - 40  # this minute, real-time
    assert resolve_start(None, 600, 24, now=START + 10) == START - 40 - 86400  # ends at the real now


def test_helpers():
    assert episodes([1, 2, 3, 4, 5, 6], [0, 1, 1, 0, 1, 0]) == [(2, 3), (5, 5)]
    assert episodes([1, 2, 3, 4, 5, 6], [0, 1, 1, 0, 1, 0], merge_gap_s=2) == [(2, 5)]
    assert trailing_sums([0, 10, 20, 30], [1, 2, 3, 4], 20) == [1, 3, 5, 7]
    bucket = TippingBucket()
    assert [bucket(x) for x in (0.04, 0.04, 0.04, 0.25)] == [0.0, 0.0, 0.1, 0.2]


@pytest.mark.parametrize("name", ["labels.jsonl", "labels.csv"])
async def test_run_simulation_publishes_everything_through_the_gateway(settings, tmp_path, name):
    gateway = Gateway(settings, REGISTRY)
    await gateway.start()
    labels_path = tmp_path / name
    result = await run_simulation(settings, REGISTRY, speed=0, scenario="all", seed=9, duration_h=2.0,
                                  labels_path=labels_path, batch=5)
    assert result.readings == 6 * 120 and result.messages_published < result.readings
    topics = [readings_topic(k) for k in ("water_level", "traffic", "weather")]
    got = await read_until(settings.kafka, [*topics, TOPIC_DEADLETTER],
                        lambda o: sum(len(readings_in(o[t])) for t in topics) >= result.readings)
    await gateway.stop()
    assert got[TOPIC_DEADLETTER] == []
    delivered = {(r.sensor_id, r.ts) for t in topics for r in readings_in(got[t])}
    expected, _ = simulate(REGISTRY, "all", 9, Clock(result.start, 2.0))
    assert delivered == {(r.sensor_id, r.ts) for r in expected}

    if name.endswith(".csv"):
        rows = list(csv.DictReader(labels_path.open()))
    else:
        rows = [json.loads(line) for line in labels_path.read_text().splitlines()]
    assert rows == [lab.as_dict() for lab in result.labels]
    assert {r["label"] for r in rows} >= {"flood above warning level", "rainstorm orange", "incident"}


async def test_run_simulation_stops_early_on_the_stop_event(settings, monkeypatch):
    import simulators.simulation as simulation

    published = asyncio.Event()  # simulating a day and connecting take a while on a slow machine
    paced = simulation.publish_paced

    async def publish_paced(publisher, *args, **kwargs):
        publish = publisher.publish

        def publish_and_tell(*a, **kw):
            publish(*a, **kw)
            published.set()

        publisher.publish = publish_and_tell
        return await paced(publisher, *args, **kwargs)

    monkeypatch.setattr(simulation, "publish_paced", publish_paced)
    stop = asyncio.Event()
    task = asyncio.create_task(run_simulation(settings, REGISTRY, speed=60, scenario="normal", seed=1,
                                              duration_h=24.0, stop_event=stop))
    await asyncio.wait_for(published.wait(), 30)  # the first message is out: stop mid-run
    stop.set()
    result = await asyncio.wait_for(task, 30)
    assert 0 < result.messages_published < result.readings


def test_simulate_command_publishes_and_writes_labels(settings, tmp_path):
    config = tmp_path / "cityeye.yaml"
    config.write_text(yaml.safe_dump({"mqtt": {"port": settings.mqtt.port}, "registry": settings.registry}))
    labels = tmp_path / "out" / "labels.jsonl"
    code = cli_main(["simulate", "--config", str(config), "--speed", "0", "--scenario", "flood",
                     "--duration-h", "3", "--seed", "4", "--labels", str(labels)])
    assert code == 0
    rows = [json.loads(line) for line in labels.read_text().splitlines()]
    assert {r["label"] for r in rows} >= {"flood above warning level", "rainstorm orange"}
    assert all(set(r) == {"sensor_id", "label", "start", "end"} for r in rows)


def test_simulate_command_rejects_a_bad_config(tmp_path):
    config = tmp_path / "bad.yaml"
    config.write_text("mqtt: {port: 0}\n")
    assert cli_main(["simulate", "--config", str(config), "--duration-h", "1"]) == 2
