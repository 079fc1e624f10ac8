"""Sensor kinds as configuration: the bundled declaration, kinds files and their errors, the example kinds."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from cityeye import kinds as kinds_module
from cityeye.contracts import FIELDS, KINDS, DeadLetter, Reading, all_topics, kind_fields, readings_topic
from cityeye.errors import RegistryError
from cityeye.kinds import KindsError, declared, kind_names, kinds_declared, parse_kinds, use_kinds_file
from cityeye.sensor_registry import load_settings_and_registry, parse_registry
from detectors.rulebook import RulesError, parse_rulebook
from evaluation.backtest.data import main_field
from evaluation.rule_tests import run_rule_test_file
from ingest.validation import validate_message

REPO = Path(__file__).resolve().parent.parent
EXAMPLE_TESTS = REPO / "detectors" / "example_kinds.test.yaml"
NOW = 1_780_000_000.0

RIVER_TEMPERATURE = """\
kinds:
  river_temperature:
    description: water temperature probe
    main_field: water_temp_c
    fields:
      water_temp_c: {unit: degC, low: -5, high: 45, description: water temperature}
"""
REGISTRY = """\
sensors:
  - {id: rt-1, kind: river_temperature, district: huangpu, lat: 31.2, lon: 121.5}
"""


@pytest.fixture
def restore_kinds():
    """Kinds declared by a test are forgotten after it."""
    with kinds_declared(None):
        yield


def test_the_bundled_kinds_are_the_former_hard_coded_tables():
    assert KINDS[:3] == ("water_level", "traffic", "weather")
    ranges = {k: {n: (f.low, f.high) for n, f in FIELDS[k].items()} for k in KINDS[:3]}
    assert ranges == {
        "water_level": {"level_m": (-50.0, 500.0)},
        "traffic": {"speed_kmh": (0.0, 300.0), "flow_vph": (0.0, 20000.0), "occupancy_pct": (0.0, 100.0)},
        "weather": {"rain_mm": (0.0, 500.0), "temp_c": (-60.0, 65.0), "wind_ms": (0.0, 120.0),
                    "gust_ms": (0.0, 150.0), "humidity_pct": (0.0, 100.0)},
    }
    assert FIELDS["water_level"]["level_m"].unit == "m"
    assert [main_field(k) for k in KINDS[:3]] == ["level_m", "speed_kmh", "rain_mm"]
    assert {"readings.air_quality", "readings.manhole"} <= set(all_topics())


@pytest.mark.parametrize("text, where", [
    ("kinds:\n  x_kind:\n    main_field: a\n    fields:\n      a: {unit: m, low: 0, high: 1, colour: red}\n",
     "<t>:5: kinds.x_kind.fields.a.colour: Extra inputs are not permitted"),
    ("kinds:\n  x_kind:\n    main_field: a\n    fields:\n      a: {unit: m, low: 2, high: 1}\n",
     "<t>:5: kinds.x_kind.fields.a: low (2.0) must be below high (1.0)"),
    ("kinds:\n  x_kind:\n    main_field: a\n    fields:\n      a: {unit: m, low: zero, high: 1}\n",
     "<t>:5: kinds.x_kind.fields.a.low: Input should be a valid number"),
    ("kinds:\n  x_kind:\n    main_field: b\n    fields:\n      a: {unit: m, low: 0, high: 1}\n",
     "<t>:3: kinds.x_kind.main_field: 'b' is not one of the kind's fields (a)"),
    ("kinds:\n  x_kind:\n    main_field: a\n    fields:\n      a: {low: 0, high: 1}\n",
     "<t>:5: kinds.x_kind.fields.a.unit: Field required"),
    ("kinds:\n  Sewer/Flow:\n    main_field: a\n    fields:\n      a: {unit: m, low: 0, high: 1}\n",
     "<t>:2: kinds.Sewer/Flow: a kind is a lower-case token"),
    ("kinds:\n  x_kind:\n    main_field: a\n    fields:\n      a: {unit: m, low: 0, high: 1}\nchecks: {}\n",
     "<t>:6: checks: unknown key; expected kinds"),
    ("kinds: [a, b]\n", "<t>:1: the top level must be a mapping with a non-empty 'kinds' mapping"),
    ("kinds:\n  x_kind: {main_field: a, fields: {a: [1}\n", "<t>:2: not valid YAML"),
])
def test_a_bad_kinds_file_is_refused_naming_file_line_and_field(text, where):
    with pytest.raises(KindsError) as err:
        parse_kinds(text, "<t>")
    assert str(err.value).startswith(where)


def test_a_kinds_file_in_the_settings_declares_a_kind_for_registry_rules_topics_and_gateway(
        tmp_path, monkeypatch, restore_kinds):
    (tmp_path / "kinds.yaml").write_text(RIVER_TEMPERATURE)
    (tmp_path / "registry.yaml").write_text(REGISTRY)
    (tmp_path / "cityeye.yaml").write_text(f"registry: {tmp_path / 'registry.yaml'}\n")
    monkeypatch.delenv("CITYEYE_CONFIG", raising=False)
    with pytest.raises(RegistryError, match="registry.yaml:2: sensors\\[0\\].kind: unknown kind 'river_temperature'"):
        load_settings_and_registry(tmp_path / "cityeye.yaml")

    (tmp_path / "cityeye.yaml").write_text(f"registry: {tmp_path / 'registry.yaml'}\n"
                                           f"kinds: {tmp_path / 'kinds.yaml'}\n")
    settings, registry = load_settings_and_registry(tmp_path / "cityeye.yaml")
    assert settings.kinds.endswith("kinds.yaml") and registry.get("rt-1").kind == "river_temperature"
    assert "river_temperature" in kind_names() and all_topics()[readings_topic("river_temperature")] == 4
    assert kind_fields("river_temperature")["water_temp_c"].unit == "degC"
    assert main_field("river_temperature") == "water_temp_c"

    topic = "cityeye/huangpu/river_temperature/rt-1"
    [ok] = validate_message(json.dumps({"ts": NOW * 1000, "values": {"water_temp_c": 18.5}}).encode(),
                            topic, registry, NOW)
    [hot] = validate_message(json.dumps({"ts": NOW * 1000, "values": {"water_temp_c": 99.0}}).encode(),
                             topic, registry, NOW)
    assert isinstance(ok, Reading) and ok.values == {"water_temp_c": 18.5}
    assert isinstance(hot, DeadLetter) and hot.reason.startswith("out_of_range") and "water_temp_c" in hot.reason

    rules = parse_rulebook("kinds:\n  river_temperature:\n    warm:\n      type: warning_levels\n"
                           "      field: water_temp_c\n      levels: {yellow: 28, orange: 32}\n", "rules.yaml")
    assert [c.name for c in rules.checks_for(registry.get("rt-1"))] == ["river_temperature.warm"]


def test_a_topic_means_what_the_kinds_declared_now_say_though_topics_are_remembered(tmp_path):
    (tmp_path / "kinds.yaml").write_text(RIVER_TEMPERATURE)
    registry = parse_registry(REGISTRY.replace("river_temperature", "water_level"))  # rt-1 known, another kind
    topic, payload = "cityeye/huangpu/river_temperature/rt-1", json.dumps({"ts": NOW * 1000, "values": {"x": 1}}).encode()

    def reason() -> str:
        [letter] = validate_message(payload, topic, registry, NOW)
        return letter.reason

    assert reason().startswith("bad_topic: unknown kind 'river_temperature'")
    with kinds_declared(tmp_path / "kinds.yaml"):
        assert reason().startswith("registry_mismatch")  # the topic is read again: its kind exists now
    assert reason().startswith("bad_topic: unknown kind 'river_temperature'")


def test_a_kinds_file_may_not_redeclare_a_known_kind_differently(tmp_path, restore_kinds):
    path = tmp_path / "kinds.yaml"
    path.write_text("kinds:\n  water_level:\n    main_field: level_cm\n    fields:\n"
                    "      level_cm: {unit: cm, low: 0, high: 10000}\n")
    with pytest.raises(KindsError, match="kinds.water_level: already declared differently by .*cityeye/kinds.yaml"):
        use_kinds_file(path)
    assert declared()["water_level"].main_field == "level_m"
    path.write_text(RIVER_TEMPERATURE)
    assert use_kinds_file(path) and use_kinds_file(path)  # the same declaration again is no change


def test_rules_for_a_kind_nobody_declared_are_refused():
    with pytest.raises(RulesError, match="rules.yaml:2: kinds.sewer_flow: unknown kind; expected one of water_level"):
        parse_rulebook("kinds:\n  sewer_flow:\n    high: {type: warning_levels, field: q, levels: {red: 1}}\n",
                       "rules.yaml")
    assert "sewer_flow" not in kinds_module.kind_names()


def test_the_example_kinds_gateway_refuses_impossible_values():
    registry = parse_registry("sensors:\n  - {id: aq-1, kind: air_quality, district: d, lat: 31.2, lon: 121.5}\n"
                              "  - {id: mh-1, kind: manhole, district: d, lat: 31.2, lon: 121.5,\n"
                              "     levels: {warning_depth_m: 1.5, shaft_depth_m: 3.0}}\n")
    for topic, values, bad in (("cityeye/d/air_quality/aq-1", {"pm25_ugm3": 80.0, "o3_ugm3": 150.0},
                                {"pm25_ugm3": -3.0}),
                               ("cityeye/d/manhole/mh-1", {"tilt_deg": 2.0, "h2s_ppm": 0.5}, {"ch4_pct_lel": 140.0})):
        [good] = validate_message(json.dumps({"ts": NOW * 1000, "values": values}).encode(), topic, registry, NOW)
        [refused] = validate_message(json.dumps({"ts": NOW * 1000, "values": bad}).encode(), topic, registry, NOW)
        assert isinstance(good, Reading) and good.values == values
        assert isinstance(refused, DeadLetter) and refused.reason.startswith("out_of_range"), refused


def test_the_example_kinds_pass_their_rule_tests():
    results = run_rule_test_file(EXAMPLE_TESTS)
    assert len(results) == 4
    assert [r.failures for r in results if not r.passed] == []
    assert {rule for r in results for _, rule, _, _ in r.events} >= {
        "air_quality.pm25", "air_quality.pm10", "air_quality.o3", "manhole.cover", "manhole.water",
        "manhole.methane", "manhole.rate_of_rise"}


def test_a_rule_test_file_may_declare_kinds_for_its_sensors():
    results = run_rule_test_file(REPO / "docs" / "examples" / "river-temperature.test.yaml")
    assert [r.failures for r in results] == [[]] and results[0].events
    assert "river_temperature" not in kind_names()  # declared for the file's run only
