"""ingest.validation: every refusal reason, batches, and the accepted shape."""

from __future__ import annotations

import base64
import json
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given, settings, strategies as st

from cityeye.config import load_settings
from cityeye.contracts import DeadLetter, Reading, format_ts, parse_ts, to_json
from cityeye.errors import ConfigError
from cityeye.sensor_registry import parse_registry
from ingest.validation import REASONS, Limits, reason_code, validate_message

NOW = 1_780_000_000.0  # 2026-05-28
REGISTRY = parse_registry("""
sensors:
  - {id: wl-1, kind: water_level, district: huangpu, lat: 31.2, lon: 121.5, levels: {warning_m: 4.5}}
  - {id: wx-1, kind: weather, district: pudong, lat: 31.2, lon: 121.5}
  - {id: tr-1, kind: traffic, district: jingan, lat: 31.2, lon: 121.5}
""")
WL = "cityeye/huangpu/water_level/wl-1"
WX = "cityeye/pudong/weather/wx-1"


def check(payload, topic=WL, limits=Limits()):
    raw = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
    return validate_message(raw, topic, REGISTRY, NOW, limits)


def refused(payload, topic=WL, limits=Limits()) -> DeadLetter:
    [out] = check(payload, topic, limits)
    assert isinstance(out, DeadLetter), out
    return out


def good(ts=NOW - 60, **values):
    return {"ts": format_ts(ts), "values": values or {"level_m": 3.2}}


def test_a_good_reading_is_accepted_with_every_field():
    [r] = check({"ts": format_ts(NOW - 60), "values": {"level_m": 3, "battery_v": 3.61}},
                limits=Limits(unknown_fields="keep"))
    assert r == Reading(sensor_id="wl-1", kind="water_level", district="huangpu", ts=NOW - 60,
                        values={"level_m": 3.0, "battery_v": 3.61}, received_at=NOW, mqtt_topic=WL)
    assert isinstance(r.values["level_m"], float)
    assert Reading.from_json(to_json(r)) == r


def test_epoch_milliseconds_and_offsets_are_accepted():
    [a] = check({"ts": int((NOW - 30) * 1000), "values": {"level_m": 1}})
    [b] = check({"ts": "2026-05-29T04:26:10+08:00", "values": {"level_m": 1}})  # 20:26:10Z
    assert a.ts == NOW - 30
    assert b.ts == NOW - 30


@pytest.mark.parametrize("topic, detail", [
    ("cityeye/huangpu/water_level", "is not cityeye"),
    ("cityeye/huangpu/water_level/wl-1/extra", "is not cityeye"),
    ("other/huangpu/water_level/wl-1", "is not cityeye"),
    ("cityeye/huangpu/sewage/wl-1", "unknown kind"),
    ("cityeye/huang pu/water_level/wl-1", "district"),
    ("cityeye/huangpu/water_level/", "sensor id"),
])
def test_bad_topics(topic, detail):
    dl = refused(good(), topic=topic)
    assert reason_code(dl.reason) == "bad_topic" and detail in dl.reason
    assert dl.mqtt_topic == topic and dl.sensor_id is None


def test_oversized_payload_is_refused_before_parsing_and_truncated():
    limits = Limits(max_payload_bytes=300)
    payload = b"\xff" * 5000  # not even UTF-8: size is checked first
    dl = refused(payload, limits=limits)
    assert dl.reason == "too_large: payload of 5000 bytes exceeds the limit of 300"
    assert base64.b64decode(dl.payload_b64) == payload[:1024]
    assert dl.sensor_id == "wl-1"


def test_non_utf8_keeps_exact_bytes():
    payload = b'{"ts": "\xc3\x28", "values": {}}'
    dl = refused(payload)
    assert dl.reason == "not_utf8: invalid UTF-8 at byte 8"
    assert base64.b64decode(dl.payload_b64) == payload
    assert "\ufffd" in dl.payload


@pytest.mark.parametrize("payload", [b"", b"{", b"not json", b'{"ts": 1,}', b"[" * 100000,
                                     b'{"ts": 1, "values": {"level_m": NaN}}',
                                     b'{"ts": 1, "values": {"level_m": -Infinity}}'])
def test_invalid_json(payload):
    dl = refused(payload, limits=Limits(max_payload_bytes=200000))
    assert reason_code(dl.reason) == "invalid_json"


@pytest.mark.parametrize("payload, detail", [(b"[]", "empty array"), (b"3.5", "number"), (b'"x"', "string"),
                                             (b"null", "null"), (b"true", "boolean")])
def test_bad_shape(payload, detail):
    dl = refused(payload)
    assert reason_code(dl.reason) == "bad_shape" and detail in dl.reason


def test_batch_cap():
    dl = refused([good()] * 11, limits=Limits(max_batch_items=10))
    assert dl.reason == "batch_too_large: 11 readings in one message; the limit is 10"


def test_unknown_sensor_and_registry_mismatch():
    dl = refused(good(), topic="cityeye/huangpu/water_level/wl-404")
    assert dl.reason == "unknown_sensor: sensor 'wl-404' is not in the registry" and dl.sensor_id == "wl-404"
    dl = refused(good(), topic="cityeye/minhang/water_level/wl-1")
    assert reason_code(dl.reason) == "registry_mismatch" and "minhang/water_level" in dl.reason
    dl = refused(good(), topic="cityeye/huangpu/weather/wl-1")
    assert reason_code(dl.reason) == "registry_mismatch"


@pytest.mark.parametrize("ts, code", [
    (None, "bad_ts"), (True, "bad_ts"), ("yesterday", "bad_ts"), ("2026-05-28T12:00:00", "naive_timestamp"),
    ([1], "bad_ts"), (10 ** 400, "bad_ts"), ("x" * 100, "bad_ts"),
    (format_ts(NOW + 301), "ts_in_future"), (format_ts(NOW - 30 * 86400 - 1), "ts_too_old"),
    ((NOW + 10 * 365 * 86400) * 1000, "ts_in_future"), (0, "ts_too_old"),
])
def test_bad_timestamps(ts, code):
    item = {"values": {"level_m": 1.0}}
    if ts is not None:
        item["ts"] = ts
    assert reason_code(refused(item).reason) == code


def test_timestamp_limits_are_inclusive_and_configurable():
    assert isinstance(check(good(ts=NOW + 300))[0], Reading)
    assert isinstance(check(good(ts=NOW - 30 * 86400))[0], Reading)
    limits = Limits(max_future_s=0, max_age_s=60)
    assert reason_code(refused(good(ts=NOW + 1), limits=limits).reason) == "ts_in_future"
    assert reason_code(refused(good(ts=NOW - 61), limits=limits).reason) == "ts_too_old"


def test_a_naive_timestamp_has_its_own_reason_naming_the_setting():
    dl = refused({"ts": "2025-08-16T00:00:00", "values": {"level_m": 1.0}}, limits=Limits(max_age_s=0))
    assert dl.reason == ("naive_timestamp: ts '2025-08-16T00:00:00' has no UTC offset; "
                         "set ingest.timezone or send an offset")
    [dl] = check([{"ts": "2026-05-28 12:00", "values": {"level_m": 1.0}}])
    assert dl.reason.startswith("naive_timestamp: batch item 0: ts '2026-05-28 12:00' has no UTC offset")


@pytest.mark.parametrize("naive, zone, utc", [
    ("2026-05-29T04:26:10", "Asia/Shanghai", "2026-05-28T20:26:10Z"),
    ("2026-05-28T20:26:10", "UTC", "2026-05-28T20:26:10Z"),
    ("2026-05-28T21:26:10", "Europe/London", "2026-05-28T20:26:10Z"),  # BST, +01:00
    ("2025-10-26T01:30:00", "Europe/London", "2025-10-26T00:30:00Z"),  # the repeated hour: the earlier (BST)
])
def test_naive_timestamps_are_read_in_the_configured_zone(naive, zone, utc):
    limits = Limits(max_age_s=0, naive_tz=ZoneInfo(zone))
    [r] = check({"ts": naive, "values": {"level_m": 1.0}}, limits=limits)
    assert isinstance(r, Reading) and r.ts == parse_ts(utc)
    [r] = check({"ts": utc, "values": {"level_m": 1.0}}, limits=limits)  # an offset still wins
    assert r.ts == parse_ts(utc)


def test_max_age_0_accepts_readings_of_any_age_but_not_the_future():
    limits = Limits(max_age_s=0)
    for ts in ("2015-03-01T00:15:00Z", 0, format_ts(NOW - 30 * 86400 - 1)):
        [r] = check({"ts": ts, "values": {"level_m": 1.0}}, limits=limits)
        assert isinstance(r, Reading), ts
    assert reason_code(refused(good(ts=NOW + 301), limits=limits).reason) == "ts_in_future"


def test_ingest_settings_time_zone_and_any_age():
    limits = Limits.from_settings(load_settings(None, ingest__timezone="Europe/London", ingest__max_age_s=0))
    assert limits.naive_tz == ZoneInfo("Europe/London") and limits.max_age_s == 0
    assert Limits.from_settings(load_settings(None)) == Limits()  # defaults: naive refused, 30 days
    with pytest.raises(ConfigError, match=r"ingest\.timezone: unknown time zone 'Europe/Londn'"):
        load_settings(None, ingest__timezone="Europe/Londn")
    with pytest.raises(ConfigError, match=r"ingest\.max_age_s"):
        load_settings(None, ingest__max_age_s=-1)


@pytest.mark.parametrize("values, code, detail", [
    (None, "bad_values", "missing"), ([1], "bad_values", "not an object"), ({}, "bad_values", "empty"),
    ({"level m": 1}, "bad_values", "field name"), ({"": 1}, "bad_values", "field name"),
    ({"level_m": "3.2"}, "not_a_number", "string"), ({"level_m": "NaN"}, "not_a_number", "string"),
    ({"level_m": "Infinity"}, "not_a_number", "string"), ({"level_m": True}, "not_a_number", "boolean"),
    ({"level_m": None}, "not_a_number", "null"), ({"level_m": [1]}, "not_a_number", "array"),
    ({"level_m": {"v": 1}}, "not_a_number", "object"), ({"extra": 10 ** 400}, "not_a_number", "too large"),
    ({"level_m": 500.01}, "out_of_range", "level_m=500.01 outside [-50, 500]"),
    ({"level_m": -51}, "out_of_range", "outside"),
])
def test_bad_values(values, code, detail):
    item = {"ts": format_ts(NOW)}
    if values is not None:
        item["values"] = values
    dl = refused(item)
    assert reason_code(dl.reason) == code and detail in dl.reason, dl.reason


def test_infinity_from_an_overflowing_literal_is_not_a_number():
    dl = refused(b'{"ts": "2026-05-28T20:26:00Z", "values": {"level_m": 1e999}}')
    assert dl.reason == "not_a_number: level_m is not finite"


def test_too_many_fields():
    dl = refused(good(**{f"f{i}": i for i in range(5)}), limits=Limits(max_fields=4))
    assert dl.reason == "bad_values: 5 fields; the limit is 4"


def test_ranges_are_per_kind():
    [r] = check({"ts": format_ts(NOW), "values": {"rain_mm": 0, "humidity_pct": 100, "level_m": 999}}, topic=WX,
                limits=Limits(unknown_fields="keep"))
    assert isinstance(r, Reading)  # level_m is an unknown field for weather, kept unchecked on request
    dl = refused({"ts": format_ts(NOW), "values": {"humidity_pct": 100.5}}, topic=WX)
    assert reason_code(dl.reason) == "out_of_range"


def test_fields_the_kind_does_not_declare_are_rejected_by_default_or_dropped():
    traffic_on_a_gauge = {"ts": format_ts(NOW), "values": {"level_m": 2.0, "speed_kmh": 999}}
    dl = refused(traffic_on_a_gauge)
    assert dl.reason == "unknown_field: speed_kmh is not a field of water_level (declared: level_m)"
    [r] = check(traffic_on_a_gauge, limits=Limits(unknown_fields="drop"))
    assert r.values == {"level_m": 2.0}
    dl = refused({"ts": format_ts(NOW), "values": {"speed_kmh": 50}}, limits=Limits(unknown_fields="drop"))
    assert dl.reason == "unknown_field: no field of water_level left after dropping undeclared ones (declared: level_m)"
    # an undeclared field is never passed on unchecked: with keep it still must be a finite number
    assert reason_code(refused({"ts": format_ts(NOW), "values": {"level_m": 1, "x": "y"}},
                               limits=Limits(unknown_fields="keep")).reason) == "not_a_number"
    settings = load_settings(None, ingest__unknown_fields="drop")
    assert Limits.from_settings(settings).unknown_fields == "drop"


def test_a_lone_surrogate_in_a_batch_item_is_a_dead_letter_with_an_encodable_payload():
    """JSON may escape a lone surrogate; Python decodes it into a string UTF-8 cannot encode."""
    payload = b'[{"ts": "\\ud800", "values": {"level_m": 1}}, {"ts": "%s", "values": {"\\udfff": 1}}]' % (
        format_ts(NOW).encode())
    first, second = check(payload)
    assert first.reason.startswith("bad_ts: batch item 0: ")
    assert json.loads(first.payload) == {"ts": "\ud800", "values": {"level_m": 1}}
    assert second.reason == "bad_values: batch item 1: field name '\\udfff' is not an identifier of up to 64 characters"
    for letter in (first, second):
        assert DeadLetter.from_json(to_json(letter)) == letter
        base64.b64decode(letter.payload_b64).decode("utf-8")  # valid UTF-8


def test_batch_good_items_pass_and_each_bad_item_is_dead_lettered():
    items = [good(NOW - 120), {"ts": "bad", "values": {"level_m": 1}}, 7, good(NOW - 60, level_m=600)]
    out = check(items)
    assert [type(o) for o in out] == [Reading, DeadLetter, DeadLetter, DeadLetter]
    assert out[0].ts == NOW - 120
    assert out[1].reason.startswith("bad_ts: batch item 1: ts 'bad' is not RFC 3339")
    assert json.loads(out[1].payload) == items[1]
    assert out[2].reason == "bad_shape: batch item 2: a JSON number, not an object"
    assert out[3].reason.startswith("out_of_range: batch item 3: level_m=600")
    assert all(o.sensor_id == "wl-1" and o.received_at == NOW for o in out)


def test_single_item_array_is_a_batch():
    [dl] = check([{"ts": "bad", "values": {"level_m": 1}}])
    assert dl.reason.startswith("bad_ts: batch item 0:")


def test_every_reason_code_is_documented():
    assert set(REASONS) == {"bad_topic", "too_large", "not_utf8", "invalid_json", "bad_shape", "batch_too_large",
                            "unknown_sensor", "registry_mismatch", "bad_ts", "naive_timestamp", "ts_in_future",
                            "ts_too_old",
                            "bad_values", "not_a_number", "unknown_field", "out_of_range"}


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=400), st.sampled_from([WL, WX, "cityeye/x/y/z", "#"]))
def test_arbitrary_bytes_never_raise(payload, topic):
    for out in validate_message(payload, topic, REGISTRY, NOW):
        if isinstance(out, DeadLetter):
            assert reason_code(out.reason) in REASONS
        to_json(out)  # always serialisable, never NaN


#: text with lone surrogates too (JSON can escape them; st.text() alone never draws them)
_text = st.text(st.characters() | st.characters(min_codepoint=0xD800, max_codepoint=0xDFFF), max_size=5)
json_values = st.recursive(st.none() | st.booleans() | st.floats(allow_nan=False) | st.integers() | _text,
                           lambda c: st.lists(c, max_size=3) | st.dictionaries(st.text(max_size=5), c, max_size=3),
                           max_leaves=10)


@settings(max_examples=300, deadline=None)
@given(st.dictionaries(st.sampled_from(["ts", "values", "x"]), json_values) | st.lists(json_values, max_size=4)
       | st.lists(st.dictionaries(st.sampled_from(["ts", "values", "x"]), json_values), max_size=4))
def test_arbitrary_json_never_raises(doc):
    for out in check(doc):
        assert isinstance(out, (Reading, DeadLetter))
        to_json(out)
