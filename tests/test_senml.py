"""SenML (RFC 8428) packs to readings and dead letters: ``ingest.senml`` through the one validation path."""

from __future__ import annotations

import json

import pytest

from cityeye.contracts import DeadLetter, Reading
from cityeye.sensor_registry import load_registry
from ingest.formats import FORMAT_REASONS, DeviceFormats
from ingest.validation import REASONS, Limits, reason_code
from simulators import DEMO_REGISTRY

NOW = 1782907200.0
WL = "cityeye/huangpu/senml/wl-huangpu-01"
WX = "cityeye/pudong/senml/wx-pudong-01"
FORMATS = DeviceFormats(load_registry(DEMO_REGISTRY))


def run(pack, topic=WL, now=NOW) -> list[Reading | DeadLetter]:
    return FORMATS.validate(json.dumps(pack).encode(), topic, now)


def readings(pack, topic=WL) -> list[tuple[float, dict]]:
    outcomes = run(pack, topic)
    assert all(isinstance(o, Reading) for o in outcomes), [getattr(o, "reason", o) for o in outcomes]
    return [(o.ts, o.values) for o in outcomes]


def reasons(pack, topic=WL) -> list[str]:
    return [o.reason for o in run(pack, topic) if isinstance(o, DeadLetter)]


def test_base_values_carry_forward_and_times_resolve_per_rfc_4_6():
    pack = [{"bn": "wl-huangpu-01:", "bt": NOW - 120, "bu": "cm", "bver": 10, "n": "level", "v": 455},
            {"n": "level", "t": 60, "v": 460},
            {"bu": "m", "n": "level", "t": 120, "v": 4.7}]
    assert readings(pack) == [(NOW - 120, {"level_m": 4.55}), (NOW - 60, {"level_m": 4.6}), (NOW, {"level_m": 4.7})]


def test_base_value_is_added_and_relative_times_count_from_the_gateway_clock():
    pack = [{"bv": 4.0, "n": "level_m", "v": 0.25, "t": -30}, {"n": "level_m", "v": 0.5}]
    assert readings(pack) == [(NOW - 30, {"level_m": 4.25}), (NOW, {"level_m": 4.5})]
    # 2**28 and above is absolute (a device with a real clock): 1978 is refused as too old, not shifted
    assert reasons([{"n": "level_m", "v": 1.0, "t": 2 ** 28 + 5}])[0].startswith("ts_too_old: record 0: ")


def test_records_of_one_time_make_one_reading_with_converted_units():
    pack = [{"bn": "urn:dev:ops:wx-pudong-01:", "bt": NOW, "n": "temp", "u": "Cel", "v": 24.5},
            {"n": "rain", "u": "mm", "v": 1.2}, {"n": "wind", "u": "km/h", "v": 36},
            {"n": "humidity", "u": "%RH", "v": 80}, {"n": "temp", "u": "K", "v": 298.15, "t": 60}]
    (ts0, first), (ts1, second) = readings(pack, WX)
    assert (ts0, ts1) == (NOW, NOW + 60)
    assert first == {"temp_c": 24.5, "rain_mm": 1.2, "wind_ms": 10.0, "humidity_pct": 80.0}
    assert second == {"temp_c": 25.0}


def test_a_name_the_kind_does_not_declare_follows_ingest_unknown_fields():
    pack = [{"n": "level", "v": 4.0}, {"n": "battery_v", "v": 3.6}]
    assert reasons(pack) == ["unknown_field: records 0,1: battery_v is not a field of water_level (declared: level_m)"]
    keep = FORMATS.validate(json.dumps(pack).encode(), WL, NOW, Limits(unknown_fields="keep"))
    assert [(o.ts, o.values) for o in keep] == [(NOW, {"level_m": 4.0, "battery_v": 3.6})]
    drop = FORMATS.validate(json.dumps(pack).encode(), WL, NOW, Limits(unknown_fields="drop"))
    assert [(o.ts, o.values) for o in drop] == [(NOW, {"level_m": 4.0})]


def test_names_with_a_slash_or_without_the_sensor_are_the_topics_sensor():
    assert readings([{"n": "wl-huangpu-01/level_m", "v": 4.0}, {"n": "level", "v": 4.1, "t": 1}]) == [
        (NOW, {"level_m": 4.0}), (NOW + 1, {"level_m": 4.1})]


@pytest.mark.parametrize("pack, reason", [
    ({"n": "level_m", "v": 1}, "senml_invalid: a SenML pack is a non-empty JSON array of records"),
    ([], "senml_invalid: a SenML pack is a non-empty JSON array of records"),
    ([{"n": "level_m", "v": 1, "foo_": 1}], "senml_invalid: record 0: unknown must-understand key 'foo_'"),
    ([{"n": "level_m", "v": 1}, {"bver": 11, "n": "level_m", "v": 1}],
     "senml_invalid: record 1: bver 11 is newer than the supported version 10"),
    ([{"n": "level_m"}], "senml_invalid: record 0: no value (v, vs, vb, vd or s)"),
    ([{"n": "level_m", "v": 1, "vs": "1"}], "senml_invalid: record 0: more than one value (v, vs)"),
    ([{"n": "level m", "v": 1}], "senml_invalid: record 0: name 'level m' is empty or has characters"),
    ([{"v": 1}], "senml_invalid: record 0: name '' is empty"),
    ([{"n": "level_m\n", "v": 1}], "senml_invalid: record 0: name 'level_m\\n' is empty or has characters"),
    ([{"n": "level_m", "v": "4.2"}], "senml_invalid: record 0: v has the wrong type (str)"),
    ([{"n": "level_m", "v": True}], "senml_invalid: record 0: v has the wrong type (bool)"),
    ([{"n": "level_m", "v": 1, "t": "now"}], "senml_invalid: record 0: t has the wrong type (str)"),
    ("[{\"n\": \"level_m\", \"v\": 1e999}]", "senml_invalid: record 0: v is not finite"),
])
def test_invalid_packs_are_refused_whole(pack, reason):
    payload = pack.encode() if isinstance(pack, str) else json.dumps(pack).encode()
    outcomes = FORMATS.validate(payload, WL, NOW)
    assert len(outcomes) == 1 and isinstance(outcomes[0], DeadLetter)
    assert outcomes[0].reason.startswith(reason), outcomes[0].reason
    assert outcomes[0].sensor_id == "wl-huangpu-01" and outcomes[0].payload == payload.decode()


def test_unknown_keys_without_an_underscore_are_ignored():
    assert readings([{"n": "level_m", "v": 4.0, "ut": 60, "vendor": {"x": 1}}]) == [(NOW, {"level_m": 4.0})]


def test_a_record_that_cannot_be_a_reading_dead_letters_its_reading_alone():
    pack = [{"bn": "wl-huangpu-01:", "n": "level", "u": "Cel", "v": 4},
            {"n": "level", "v": 4.1, "t": 1},
            {"n": "door", "vb": True, "t": 3},
            {"n": "volume", "u": "furlong", "v": 1, "t": 4},
            {"n": "level", "u": "furlong", "v": 1, "t": 5},
            {"n": "level", "u": "m", "v": 612, "t": 6},
            {"bn": "wl-minhang-01:", "n": "level", "v": 3.0, "t": 2}]
    outcomes = run(pack)
    assert [(o.ts, o.values) for o in outcomes if isinstance(o, Reading)] == [(NOW + 1, {"level_m": 4.1})]
    letters = [o for o in outcomes if isinstance(o, DeadLetter)]
    assert [d.reason for d in letters[1:]] == [
        "not_a_number: record 2: wl-huangpu-01:door has a boolean value; readings carry numbers (v)",
        "senml_unit: record 3: volume has unit 'furlong' but is no field of the sensor's kind (level_m): "
        "send it without a unit",
        "senml_unit: record 4: 'furlong' is not a SenML unit this gateway converts",
        "out_of_range: record 5: level_m=612 outside [-50, 500] (water level above gauge datum, m)",
        "senml_name: record 6: name 'wl-minhang-01:level' is for sensor 'wl-minhang-01', not the topic's 'wl-huangpu-01'",
    ]
    assert letters[0].reason.startswith("senml_unit: record 0: level in 'Cel' -> level_m: ")
    assert json.loads(letters[5].payload) == pack[6] and letters[5].sensor_id == "wl-huangpu-01"
    assert json.loads(letters[4].payload) == [pack[5]]


def test_the_registry_and_the_topic_must_agree():
    assert reasons([{"n": "level_m", "v": 1}], "cityeye/huangpu/senml/wl-ghost") == [
        "unknown_sensor: record 0: sensor 'wl-ghost' is not in the registry"]
    assert reasons([{"n": "level_m", "v": 1}], "cityeye/minhang/senml/wl-huangpu-01")[0].startswith(
        "registry_mismatch: record 0: minhang/water_level here, the registry says huangpu/water_level")


def test_times_are_checked_like_any_reading():
    assert reasons([{"n": "level_m", "v": 1, "t": 3600}])[0].startswith("ts_in_future: record 0: ")
    assert reasons([{"n": "level_m", "v": 1, "bt": NOW - 40 * 86400}])[0].startswith("ts_too_old: record 0: ")


def test_every_format_reason_code_is_documented_and_distinct_from_validations():
    assert not set(FORMAT_REASONS) & set(REASONS)
    doc = (DEMO_REGISTRY.parent.parent / "docs" / "contracts.md").read_text()
    for code in FORMAT_REASONS:
        assert f"`{code}`" in doc, code
    assert reason_code(reasons([{"n": "level_m", "v": 1, "x_": 0}])[0]) == "senml_invalid"


def test_senml_can_be_turned_off_then_its_topic_is_a_bad_topic():
    off = DeviceFormats(load_registry(DEMO_REGISTRY), senml=False)
    [letter] = off.validate(json.dumps([{"n": "level_m", "v": 1}]).encode(), WL, NOW)
    assert letter.reason.startswith("bad_topic: unknown kind 'senml'")
