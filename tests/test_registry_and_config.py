"""Sensor registry and settings: valid files load, invalid ones name file, line and field."""

from __future__ import annotations

import pytest

from cityeye.config import load_settings
from cityeye.errors import ConfigError, RegistryError
from cityeye import sensor_registry
from cityeye.sensor_registry import (default_registry, load_registry, load_settings_and_registry, parse_registry,
                                     registry_for)
from launch.cli import main as cli_main
from simulators import DEMO_REGISTRY

GOOD = """\
sensors:
  - id: wl-1
    kind: water_level
    district: huangpu
    name: Gauge one
    lat: 31.2
    lon: 121.5
    levels: {warning_m: 4.5, guaranteed_m: 5.2}
  - id: wx-1
    kind: weather
    district: pudong
    lat: 31.2
    lon: 121.5
"""


def test_demo_registry_loads_and_is_the_default(monkeypatch, tmp_path):
    registry = load_registry(DEMO_REGISTRY)
    assert {s.kind for s in registry} == {"water_level", "traffic", "weather"}
    gauge = registry.get("wl-huangpu-01")
    assert gauge.levels["warning_m"] < gauge.levels["guaranteed_m"] < gauge.levels["historical_max_m"]
    # the kernel knows no registry file of its own; the command line declares the demo city's
    monkeypatch.setattr(sensor_registry, "_default_registry", None)
    with pytest.raises(RegistryError, match="no sensor registry"):
        registry_for(load_settings())
    assert cli_main(["gateway", "--config", str(tmp_path / "missing.yaml")]) == 2
    assert default_registry() == DEMO_REGISTRY
    assert len(registry_for(load_settings())) == len(registry)
    settings, loaded = load_settings_and_registry()
    assert settings.registry == str(DEMO_REGISTRY) and len(loaded) == len(registry)


def test_a_sensor_agrees_with_its_registered_kind_and_district():
    sensor = parse_registry(GOOD, "reg.yaml").get("wl-1")
    assert sensor.agrees_with("water_level") and sensor.agrees_with("water_level", "huangpu")
    assert not sensor.agrees_with("weather") and not sensor.agrees_with("water_level", "pudong")


def test_valid_registry():
    registry = parse_registry(GOOD, "reg.yaml")
    assert registry.get("wl-1").levels == {"warning_m": 4.5, "guaranteed_m": 5.2}
    assert registry.get("wx-1").interval_s == 60.0
    assert registry.get("nope") is None
    assert [s.id for s in registry.by_kind("weather")] == ["wx-1"]


@pytest.mark.parametrize("change, expected", [
    (("lat: 31.2\n    lon: 121.5\n    levels", "lat: 95\n    lon: 121.5\n    levels"), r"reg\.yaml:6: sensors\[0\]\.lat: .*less than or equal to 90"),
    (("kind: weather", "kind: tide"), r"reg\.yaml:10: sensors\[1\]\.kind: .*unknown kind 'tide'"),
    (("id: wx-1", "id: wl-1"), r"reg\.yaml:9: sensors\[1\]\.id: duplicate sensor id 'wl-1'"),
    (("id: wx-1", "id: wx/1"), r"reg\.yaml:9: sensors\[1\]\.id: .*no '/'"),
    (("    name: Gauge one\n", "    name: Gauge one\n    colour: red\n"), r"reg\.yaml:6: sensors\[0\]\.colour: Extra inputs"),
    (("warning_m: 4.5", "warning_m: high"), r"reg\.yaml:8: sensors\[0\]\.levels\.warning_m: "),
])
def test_invalid_registry_names_file_line_and_field(change, expected):
    old, new = change
    assert old in GOOD
    with pytest.raises(RegistryError, match=expected):
        parse_registry(GOOD.replace(old, new, 1), "reg.yaml")


def test_registry_file_problems(tmp_path):
    with pytest.raises(RegistryError, match="cannot read registry"):
        load_registry(tmp_path / "missing.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_bytes(b"sensors: [\xff]")
    with pytest.raises(RegistryError, match="not UTF-8"):
        load_registry(bad)
    bad.write_text("sensors: [unclosed")
    with pytest.raises(RegistryError, match="not valid YAML"):
        load_registry(bad)
    bad.write_text("- just a list\n")
    with pytest.raises(RegistryError, match="'sensors' list"):
        load_registry(bad)


def test_settings_file_environment_and_secrets(tmp_path, monkeypatch):
    path = tmp_path / "cityeye.yaml"
    path.write_text("kafka: {bootstrap: 'k1:9092'}\ninflux: {api: v1, password: hunter2-secret}\n")
    s = load_settings(path)
    assert s.kafka.bootstrap == "k1:9092" and s.influx.api == "v1"
    assert "hunter2" not in repr(s) and "hunter2" not in str(s.model_dump())
    monkeypatch.setenv("CITYEYE_KAFKA__BOOTSTRAP", "k2:9092")  # the environment wins over the file
    assert load_settings(path).kafka.bootstrap == "k2:9092"


def test_the_ingest_settings_come_from_the_file_and_the_environment_as_before(tmp_path, monkeypatch):
    """cityeye/ingest_settings.py's classes, re-exported by cityeye.config, read CITYEYE_INGEST__... as ever."""
    from cityeye import config, ingest_settings

    assert config.IngestSettings is ingest_settings.IngestSettings
    assert config.RateLimitSettings is ingest_settings.RateLimitSettings
    path = tmp_path / "cityeye.yaml"
    path.write_text("ingest: {produce_batch: 300, rate_limit: {burst: 7}}\n")
    monkeypatch.setenv("CITYEYE_INGEST__MAX_UNACKED", "123")
    monkeypatch.setenv("CITYEYE_INGEST__RATE_LIMIT__MESSAGES_PER_S", "2.5")
    monkeypatch.setenv("CITYEYE_INGEST__UNKNOWN_FIELDS", "drop")
    ing = load_settings(path).ingest
    assert (ing.produce_batch, ing.max_unacked, ing.unknown_fields) == (300, 123, "drop")
    assert (ing.rate_limit.messages_per_s, ing.rate_limit.burst, ing.rate_limit.enabled) == (2.5, 7, True)
    monkeypatch.setenv("CITYEYE_INGEST__TIMEZONE", "Mars/Olympus")
    with pytest.raises(ConfigError, match=r"ingest\.timezone: unknown time zone"):
        load_settings(path)


@pytest.mark.parametrize("text, expected", [
    ("mqtt: {port: 70000}", r"mqtt\.port: .*less than or equal to 65535"),
    ("influx: {api: v3}", r"influx\.api: "),
    ("kafak: {bootstrap: x}", r"kafak: Extra inputs"),
    ("registry: /no/such/file.yaml", r"registry: .*does not exist"),
    ("- a list", r"top level must be a mapping"),
    ("kafka: [unclosed", r"not valid YAML"),
])
def test_invalid_settings_name_file_and_field(tmp_path, text, expected):
    path = tmp_path / "cityeye.yaml"
    path.write_text(text)
    with pytest.raises(ConfigError, match=expected) as info:
        load_settings(path)
    assert str(path) in str(info.value)


def _with_gauge_line(line: str) -> str:
    return GOOD.replace("    name: Gauge one\n", f"    name: Gauge one\n    {line}\n", 1)


def test_a_gauge_declares_its_datum_and_unit_which_defaults_to_the_contract_unit():
    registry = parse_registry(_with_gauge_line("datum: Wusong datum\n    unit: m"), "reg.yaml")
    assert (registry.get("wl-1").datum, registry.get("wl-1").unit) == ("Wusong datum", "m")
    undeclared = parse_registry(GOOD, "reg.yaml")
    assert (undeclared.get("wl-1").datum, undeclared.get("wl-1").unit) == ("", "m"), "levels are in the contract unit"
    assert undeclared.get("wx-1").unit == "", "weather fields each have their own unit"
    demo = load_registry(DEMO_REGISTRY).by_kind("water_level")
    assert {(g.datum, g.unit) for g in demo} == {("Wusong datum", "m")}, "the demo city's gauges state their datum"


@pytest.mark.parametrize("text, expected", [
    (_with_gauge_line("unit: cm"), r"reg\.yaml:6: sensors\[0\]\.unit: water_level readings and levels are in 'm' "
                                   r".*level_m.*not 'cm'.*converted in its device mapping"),
    (_with_gauge_line("unit: ft"), r"reg\.yaml:6: sensors\[0\]\.unit: .*not 'ft'"),
    (GOOD + "    unit: mm\n", r"reg\.yaml:14: sensors\[1\]\.unit: weather readings have several fields.*rain_mm"
                             r".*leave it out"),
])
def test_a_unit_other_than_the_contract_unit_is_an_error(text, expected):
    with pytest.raises(RegistryError, match=expected):
        parse_registry(text, "reg.yaml")


def test_a_datum_is_one_line_of_text():
    with pytest.raises(RegistryError, match=r"reg\.yaml:6: sensors\[0\]\.datum: must be one line"):
        parse_registry(_with_gauge_line('datum: "Wusong\\ndatum"'), "reg.yaml")
