"""Vendor payload mappings: every shipped mapping's golden examples, and the errors a bad mapping gets."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from cityeye.config import IngestSettings
from cityeye.contracts import DeadLetter, Reading
from cityeye.errors import ConfigError
from cityeye.sensor_registry import load_registry
from ingest.formats import DeviceFormats, filter_covers
from ingest.mapping import SHIPPED_MAPPINGS, MappingError, load_mapping, parse_mapping
from ingest.mapping_examples import run_examples
from ingest.validation import reason_code
from simulators import DEMO_REGISTRY

REPO = Path(__file__).resolve().parent.parent
SHIPPED = SHIPPED_MAPPINGS
REGISTRY = load_registry(DEMO_REGISTRY)
GAUGE = (REPO / "ingest" / "mappings" / "acme-gauge.yaml").read_text()


def shipped_examples():
    for path in SHIPPED:
        for result in run_examples(load_mapping(path), REGISTRY):
            yield pytest.param(result, id=f"{path.stem}: {result.name}")


def test_three_mappings_ship_each_with_examples_of_readings_and_dead_letters():
    assert len(SHIPPED) >= 3
    for path in SHIPPED:
        examples = load_mapping(path).decl.examples
        assert any(e.get("readings") for e in examples) and any(e.get("dead_letters") for e in examples), path


@pytest.mark.parametrize("result", list(shipped_examples()))
def test_every_shipped_mapping_example_gives_its_expected_readings(result):
    assert result.passed, "\n".join(result.problems)


def test_an_example_that_expects_something_else_fails_with_what_differs():
    doc = yaml.safe_load(GAUGE)
    doc["examples"][0]["readings"][0]["values"]["level_m"] = 46.2
    doc["examples"][2]["dead_letters"] = ["out_of_range: "]
    first, _, third, _ = run_examples(parse_mapping(yaml.safe_dump(doc), "gauge.yaml"), REGISTRY)
    assert not first.passed and "'level_m': 4.62" in first.problems[0] and "'level_m': 46.2" in first.problems[0]
    assert not third.passed and "does not start with 'out_of_range: '" in third.problems[0]


def with_line(text: str, old: str, new: str) -> str:
    assert old in text
    return text.replace(old, new, 1)


@pytest.mark.parametrize("old, new, error", [
    ("kind: water_level", "kind: sewage", "gauge.yaml:6: kind: unknown kind 'sewage'"),
    ("kind: water_level", "kind: water_level\ncolour: blue", "gauge.yaml:7: colour: Extra inputs are not permitted"),
    ("{path: lvl_cm, unit: cm}", "{path: 'lvl_cm[', unit: cm}", "gauge.yaml:10: fields.level_m.path: not a JMESPath"),
    ("{path: lvl_cm, unit: cm}", "{path: lvl_cm, unit: degC}",
     "gauge.yaml:10: fields.level_m.unit: 'degC' cannot be converted to 'm' (different quantities)"),
    ("{path: lvl_cm, unit: cm}", "{path: lvl_cm, unit: furlongs_per_blink}",
     "gauge.yaml:10: fields.level_m.unit: unknown unit 'furlongs_per_blink'"),
    ("{path: lvl_cm, unit: cm}", "{path: lvl_cm, unit: cm}\n  battery_v: {path: bat_mv, unit: mV}",
     "gauge.yaml:11: fields.battery_v.unit: battery_v is no contract field of water_level"),
    ("sensor_id: {topic: device}", "sensor_id: {topic: gauge}",
     "gauge.yaml:7: sensor_id.topic: {gauge} is not a level of the topic"),
    ("sensor_id: {topic: device}", "sensor_id: {topic: device, path: id}",
     "gauge.yaml:7: sensor_id: give exactly one of topic"),
    ("topic: acme/gauge/{device}/up", "topic: acme/#/{device}", "gauge.yaml:5: topic: level '#'"),
    ("{path: t, format: epoch_s}", "{path: t, format: epoch_us}", "gauge.yaml:8: ts.format: Input should be"),
    ("{path: t, format: epoch_s}", "{format: epoch_s}", "gauge.yaml:8: ts: format received takes no path"),
    ("level_m: {path", "level m: {path", "gauge.yaml:10: fields.level m: a field name is an identifier"),
    ("kind: water_level", "kind: [water_level", "gauge.yaml:7: not valid YAML"),
])
def test_a_bad_mapping_is_refused_naming_file_line_and_field(old, new, error):
    with pytest.raises(MappingError) as caught:
        parse_mapping(with_line(GAUGE, old, new), "gauge.yaml")
    assert str(caught.value).startswith(error), str(caught.value)


def test_a_bad_example_is_a_mapping_error_not_a_failed_test():
    doc = yaml.safe_load(GAUGE)
    doc["examples"][0]["topic"] = "acme/other/wl-huangpu-01/up"
    with pytest.raises(MappingError, match="examples\\[0\\]: topic 'acme/other/wl-huangpu-01/up' does not match"):
        run_examples(parse_mapping(yaml.safe_dump(doc), "gauge.yaml"), REGISTRY)


def test_mapping_files_in_the_settings_must_exist():
    with pytest.raises(ValueError, match="mapping file 'nowhere.yaml' does not exist"):
        IngestSettings(mappings=["nowhere.yaml"])
    assert IngestSettings().senml is True and IngestSettings().mappings == []


def test_mappings_come_before_senml_and_the_contract_topics_and_add_only_uncovered_filters():
    formats = DeviceFormats.from_files(REGISTRY, [str(p) for p in SHIPPED])
    assert formats.mqtt_filters_beyond(["cityeye/#", "/cityeye/#"]) == ["acme/gauge/+/up", "loopcount/+/+",
                                                                        "meteo/+/obs"]
    assert formats.mqtt_filters_beyond(["cityeye/+/+/+"]) == ["acme/gauge/+/up", "loopcount/+/+", "meteo/+/obs"]
    assert formats.mqtt_filters_beyond(["#"]) == []
    assert DeviceFormats(REGISTRY).mqtt_filters_beyond(["x/#"]) == ["cityeye/+/senml/+"]
    assert formats.topic_sensor("acme/gauge/wl-huangpu-01/up") == "wl-huangpu-01"
    assert formats.topic_sensor("cityeye/huangpu/senml/wl-huangpu-01") == "wl-huangpu-01"
    assert formats.topic_sensor("meteo/ws9/obs") is None
    payload = json.dumps({"t": 1782907200, "lvl_cm": 462}).encode()
    [reading] = formats.validate(payload, "acme/gauge/wl-huangpu-01/up", 1782907205.0)
    assert isinstance(reading, Reading) and reading.values == {"level_m": 4.62}
    [letter] = formats.validate(payload, "acme/gauge/wl-huangpu-01/down", 1782907205.0)
    assert isinstance(letter, DeadLetter) and letter.reason.startswith("bad_topic: ")
    assert filter_covers("cityeye/#", "cityeye/+/senml/+") and not filter_covers("cityeye/+/+", "cityeye/+/+/+")


def test_vendor_device_ids_are_looked_up_in_the_mappings_ids():
    text = with_line(GAUGE, "sensor_id: {topic: device}",
                     "sensor_id: {topic: device, ids: {70B3D57ED0041234: wl-huangpu-01}}")
    formats = DeviceFormats(REGISTRY, [parse_mapping(text, "gauge.yaml")])
    payload = json.dumps({"t": 1782907200, "lvl_cm": 462}).encode()
    [reading] = formats.validate(payload, "acme/gauge/70B3D57ED0041234/up", 1782907205.0)
    assert (reading.sensor_id, reading.values) == ("wl-huangpu-01", {"level_m": 4.62})
    [letter] = formats.validate(payload, "acme/gauge/70B3D57ED0049999/up", 1782907205.0)
    assert letter.reason == ("mapping_failed: payload: acme-gauge: sensor_id {device}: "
                             "device str '70B3D57ED0049999' has no entry in ids")
    [whole] = formats.validate(b'{"t": ', "acme/gauge/70B3D57ED0041234/up", 1782907205.0)
    assert (whole.sensor_id, reason_code(whole.reason)) == ("wl-huangpu-01", "invalid_json")
    with pytest.raises(MappingError, match="gauge.yaml:7: sensor_id.ids.70B3D57ED0041234: 'wl huangpu' is not a sensor"):
        parse_mapping(with_line(text, "wl-huangpu-01}}", "wl huangpu}}"), "gauge.yaml")


def test_a_mapped_sensor_of_another_kind_is_a_registry_mismatch():
    payload = json.dumps({"t": 1782907200, "lvl_cm": 462}).encode()
    [letter] = DeviceFormats(REGISTRY, [parse_mapping(GAUGE)]).validate(payload, "acme/gauge/wx-pudong-01/up", 1782907205.0)
    assert letter.reason.startswith("registry_mismatch: payload: pudong/water_level here, the registry says "
                                    "pudong/weather")


def test_cli_test_mapping_prints_each_example_and_fails_on_a_wrong_one(tmp_path):
    ok = subprocess.run([sys.executable, "-m", "launch.cli", "devices", "test-mapping", *map(str, SHIPPED)],
                        capture_output=True, text=True, cwd=REPO)
    assert ok.returncode == 0, ok.stderr
    assert "ok   acme-gauge: a reading in centimetres" in ok.stdout and "10 of 10 examples passed" in ok.stdout
    doc = yaml.safe_load(GAUGE)
    doc["examples"][0]["readings"][0]["sensor_id"] = "wl-minhang-01"
    (tmp_path / "wrong.yaml").write_text(yaml.safe_dump(doc))
    (tmp_path / "broken.yaml").write_text(with_line(GAUGE, "kind: water_level", "kind: sewage"))
    wrong = subprocess.run([sys.executable, "-m", "launch.cli", "devices", "test-mapping", str(tmp_path / "wrong.yaml")],
                           capture_output=True, text=True, cwd=REPO)
    assert wrong.returncode == 1 and "FAIL acme-gauge: a reading in centimetres" in wrong.stdout
    broken = subprocess.run([sys.executable, "-m", "launch.cli", "devices", "test-mapping", str(tmp_path / "broken.yaml")],
                            capture_output=True, text=True, cwd=REPO)
    assert broken.returncode == 2 and f"{tmp_path / 'broken.yaml'}:6: kind: unknown kind 'sewage'" in broken.stderr
