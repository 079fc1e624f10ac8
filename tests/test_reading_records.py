"""Single and aggregated records of ``readings.<kind>``: the one decoder and the gateway's aggregation."""

from __future__ import annotations

import json
import math

import orjson
from aiokafka.partitioner import DefaultPartitioner

from cityeye import reading_records
from cityeye.contracts import TOPIC_DEADLETTER, DeadLetter, Reading, readings_topic, to_json
from cityeye.reading_records import (AGGREGATE_HEADER, AGGREGATE_HEADERS, RejectedReading, encode_aggregate,
                                     encode_reading, partition_for, reading_from_dict, readings_of)
from ingest.aggregation import build_records
from streams.sensor_engine import SensorEngine


def reading(sid: str, ts: float, level: float = 3.0, kind: str = "water_level") -> Reading:
    values = {"level_m": level} if kind == "water_level" else {"rain_mm": level}
    return Reading(sid, kind, "huangpu", ts, values, ts + 0.5, f"cityeye/huangpu/{kind}/{sid}")


def test_a_single_record_from_an_old_gateway_is_read():
    r = reading("wl-1", 1.5e9)
    assert readings_of(to_json(r), b"wl-1") == [r]  # the contracts' own encoding, keyed by sensor
    assert readings_of(encode_reading(r), b"wl-1", []) == [r]
    assert json.loads(encode_reading(r)) == json.loads(to_json(r))


def test_an_aggregate_yields_its_readings_in_order():
    rs = [reading("wl-1", 1e9 + i, 3.0 + i / 10) for i in range(5)] + [reading("wx-1", 1e9, 2.0, "weather")]
    value = encode_aggregate([encode_reading(r) for r in rs])
    assert readings_of(value, None, AGGREGATE_HEADERS) == rs
    assert readings_of(value, None, {AGGREGATE_HEADER: b"1"}) == rs  # headers as a mapping (some clients)


def test_bad_input_is_rejected_with_its_reason_never_raised():
    good = reading("wl-1", 1e9)
    bad_element = {"sensor_id": "wl-2", "kind": "water_level", "values": {}}
    value = b"[" + encode_reading(good) + b"," + orjson.dumps(bad_element) + b"," + encode_reading(good) + b"]"
    items = readings_of(value, None, AGGREGATE_HEADERS)
    assert items[0] == good and items[2] == good
    assert isinstance(items[1], RejectedReading) and items[1].sensor_id == "wl-2"
    assert "lacks field 'district'" in items[1].reason and "aggregated record" in items[1].reason
    assert json.loads(items[1].raw) == bad_element

    [rej] = readings_of(b"{not json", b"wx-bad")
    assert "not a JSON reading" in rej.reason and rej.raw == b"{not json"
    [rej] = readings_of(encode_reading(good), b"wl-9")
    assert "is not the reading's sensor id" in rej.reason
    [rej] = readings_of(value, None, [(AGGREGATE_HEADER, b"2")])
    assert "version b'2' is not supported" in rej.reason and rej.raw == value
    [rej] = readings_of(b'{"a": 1}', None, AGGREGATE_HEADERS)
    assert "is a JSON array" in rej.reason
    [rej] = readings_of(None)
    assert "tombstone" in rej.reason
    nan = dict(good.__dict__, values={"level_m": 1e400})  # orjson reads 1e400 as inf
    [rej] = readings_of(json.dumps(nan).encode().replace(b"Infinity", b"1e400"), b"wl-1")
    assert "not finite" in rej.reason or "not a JSON" in rej.reason


def plain_reading_from_dict(d, key=None):
    """The decoder as first written (one expression, a comprehension): the oracle of the fast one."""
    if not isinstance(d, dict):
        raise ValueError(f"a reading is a JSON object, not {type(d).__name__}")
    try:
        sid, kind, district, values = d["sensor_id"], d["kind"], d["district"], d["values"]
        reading = Reading(str(sid), str(kind), str(district), float(d["ts"]),
                          {str(k): float(v) for k, v in values.items()}, float(d["received_at"]),
                          str(d.get("mqtt_topic", "")))
    except KeyError as exc:
        raise ValueError(f"reading lacks field {exc.args[0]!r}") from None
    except (TypeError, ValueError, AttributeError) as exc:
        raise ValueError(f"malformed reading: {exc}") from None
    if not reading.sensor_id:
        raise ValueError("reading has an empty sensor_id")
    if not math.isfinite(reading.ts):
        raise ValueError("reading ts is not finite")
    bad = sorted(k for k, x in reading.values.items() if not math.isfinite(x))
    if bad:
        raise ValueError(f"reading values not finite: {', '.join(bad)}")
    if key is not None and key != reading.sensor_id.encode():
        raise ValueError(f"message key {key[:64]!r} is not the reading's sensor id {reading.sensor_id!r}")
    return reading


def outcome(decode, d, key=None):
    try:
        r = decode(d, key)
    except Exception as exc:  # ValueError with the reason (an int beyond float's range: OverflowError, as before)
        return type(exc).__name__, str(exc)
    return "reading", r, [type(v) for v in (r.sensor_id, r.kind, r.district, r.ts, r.received_at, r.mqtt_topic)]


def hostile_objects() -> list:
    """A good reading's JSON object changed in every way the decoders must read, coerce or refuse."""
    base = json.loads(encode_reading(reading("wl-1", 1e9)))
    changes = [{}, {"sensor_id": ""}, {"sensor_id": 7}, {"sensor_id": None}, {"kind": 3}, {"district": ["x"]},
               {"ts": "12.5"}, {"ts": "nan"}, {"ts": "-inf"}, {"ts": None}, {"ts": "soon"}, {"ts": True},
               {"ts": 10**400}, {"received_at": "inf"}, {"received_at": []}, {"mqtt_topic": 5}, {"mqtt_topic": None},
               {"values": []}, {"values": None}, {"values": "level_m"}, {"values": {}},
               {"values": {"level_m": "3.5"}}, {"values": {"level_m": "nan"}}, {"values": {"b": "inf", "a": "-inf"}},
               {"values": {"level_m": None}}, {"values": {"level_m": [1]}}, {"values": {"level_m": False}},
               {"values": {1: 2.0, "1": 3.0}}, {"values": {"a": 1e308, "b": 1e308, "c": -1e308}},
               {"values": {"a": 1e308, "b": "nan"}}, {"values": {"a": 10**400}}, {"ts": "nan", "values": None}]
    objects = [dict(base, **change) for change in changes]
    objects += [{k: v for k, v in base.items() if k != field} for field in base]  # each field missing in turn
    objects += [{k: v for k, v in base.items() if k not in ("ts", "values")}, None, [], "reading", 3, base]
    return objects


def test_the_fast_decoder_reads_and_refuses_exactly_what_the_plain_one_does():
    base = json.loads(encode_reading(reading("wl-1", 1e9)))
    objects = hostile_objects()
    for d in objects:
        for key in (None, b"wl-1", b"wl-2", "wl-1".encode() * 40):
            assert outcome(reading_from_dict, d, key) == outcome(plain_reading_from_dict, d, key), (d, key)
    accepted = [d for d in objects if outcome(reading_from_dict, d)[0] == "reading"]
    assert sum(outcome(reading_from_dict, d)[0] == "ValueError" for d in objects) > 20
    assert 8 < len(accepted) < len(objects) - 20  # both sides were exercised
    big = reading_from_dict(dict(base, values={"a": 1e308, "b": 1e308}))  # finite values whose sum is not
    assert big.values == {"a": 1e308, "b": 1e308}


def test_the_partition_is_the_default_partitioner_of_the_sensor_key():
    partitioner = DefaultPartitioner()
    for i in range(200):
        sid = f"sensor-{i}"
        for n in (1, 4, 8, 12):
            assert partition_for(sid, n) == partitioner(sid.encode(), list(range(n)), list(range(n)))


def test_build_records_aggregates_per_partition_keeps_order_and_bounds():
    sensors = [f"wl-{i}" for i in range(16)]
    outcomes = [reading(s, 1e9 + 60 * k, 3 + k / 100) for k in range(30) for s in sensors]
    dead = DeadLetter.of(b"junk", "cityeye/x/water_level/wl-0", "invalid_json: x", 1e9, "wl-0")
    outcomes.insert(7, dead)
    records = build_records(outcomes, lambda topic: 4, max_readings=50, max_bytes=1_000_000)
    letters = [r for r in records if r.topic == TOPIC_DEADLETTER]
    assert len(letters) == 1 and letters[0].key == b"wl-0" and letters[0].headers is None
    aggs = [r for r in records if r.topic == readings_topic("water_level")]
    assert all(r.key is None and r.headers == AGGREGATE_HEADERS and 0 < len(r.outcomes) <= 50 for r in aggs)
    per_sensor: dict[str, list[float]] = {}
    for rec in aggs:
        for item in readings_of(rec.value, rec.key, rec.headers):
            assert rec.partition == partition_for(item.sensor_id, 4)
            per_sensor.setdefault(item.sensor_id, []).append(item.ts)
    assert per_sensor == {s: [1e9 + 60 * k for k in range(30)] for s in sensors}  # all there, each in order
    assert sum(len(r.outcomes) for r in aggs) == 480

    small = build_records(outcomes[:100], lambda topic: 1, max_readings=500, max_bytes=2048)
    assert all(len(r.value) <= 2048 for r in small) and len(small) > 2
    small = [r for r in small if r.topic != TOPIC_DEADLETTER]
    assert [item for r in small for item in readings_of(r.value, r.key, r.headers)] == outcomes[:7] + outcomes[8:100]
    halves = small[-1].halves()
    assert [i for h in halves for i in readings_of(h.value, None, h.headers)] == small[-1].outcomes


def test_without_aggregation_every_reading_is_a_keyed_single_record():
    rs = [reading("wl-1", 1e9), reading("wl-2", 1e9)]
    records = build_records(rs, lambda topic: 4, max_readings=1, max_bytes=1 << 20)
    assert [(r.key, r.partition, r.headers) for r in records] == [(b"wl-1", None, None), (b"wl-2", None, None)]
    assert [readings_of(r.value, r.key, r.headers) for r in records] == [[rs[0]], [rs[1]]]


def test_readings_sharing_a_position_are_all_processed_and_a_restore_skips_the_whole_record():
    engine = SensorEngine()
    rs = [reading("wl-1", 1e9 + 60 * i, 3.0) for i in range(6)]
    for r in rs[:3]:
        engine.process(r, position=10)  # one aggregated record at offset 10
    assert engine.skipped == 0 and engine.state("wl-1").last_ts == rs[2].ts
    snap = engine.snapshot("wl-1")
    restored = SensorEngine()
    assert restored.restore(snap)
    for r in rs[:3]:
        restored.process(r, position=10)  # redelivered after the snapshot: all in the state already
    assert restored.skipped == 3
    restored.process(rs[3], position=11)
    restored.process(rs[4], position=11)
    restored.process(rs[5], position=9)  # older than the last reading: a replay
    assert restored.skipped == 4 and restored.state("wl-1").last_ts == rs[4].ts


#: numbers as JSON text whose float a decoder could round differently (ints past 2**53, 2**63, 2**64, tiny, huge)
EDGE_NUMBERS = ["0", "-0", "-0.0", "1E5", "1e-7", "9007199254740993", "9223372036854775807", "9223372036854775808",
                "18446744073709551615", "18446744073709551616", "-9223372036854775809",
                "123456789012345678901234567890",
                "5e-324", "4.9e-325", "2.2250738585072011e-308", "1.7976931348623157e308", "0.30000000000000004441",
                "1800000000.1234567", "1e400", "-1e400", "true", "null", '"1"', "NaN", "1.", ".5", "01"]


def _decoded(items: list) -> list:
    """Items with everything that tells them apart: their type, fields, field order and value types."""
    return [(type(i).__name__, i, list(i.__dict__), [type(v) for v in i.__dict__.values()]) for i in items]


def test_an_aggregate_reads_the_same_on_the_fast_path_and_the_plain_one(monkeypatch):
    good = encode_reading(reading("wl-1", 1e9))
    assert b'"level_m":3.0' in good and b'"ts":1000000000.0' in good
    elements = [json.dumps(d).encode() for d in hostile_objects()]
    elements += [good.replace(b'"level_m":3.0', b'"level_m":' + n.encode()) for n in EDGE_NUMBERS]
    elements += [good.replace(b'"ts":1000000000.0', b'"ts":' + n.encode()) for n in EDGE_NUMBERS]
    elements += [b'{"mqtt_topic":"t","values":{"b":1,"a":2,"b":3},"received_at":2,"ts":1,"kind":"k",'
                 b'"district":"d","sensor_id":"s","extra":[{"deep":[[]]}]}']  # keys in another order, a duplicate
    values = [b"[" + good + b"," + element + b"," + good + b"]" for element in elements]
    values += [b"[" + element + b"]" for element in elements] + [b"[]", b" [ ] ", b"[" + good + b"] x"]
    fast = [_decoded(readings_of(value, None, AGGREGATE_HEADERS)) for value in values]
    monkeypatch.setattr(reading_records, "_well_formed_readings", lambda value: None)
    plain = [_decoded(readings_of(value, None, AGGREGATE_HEADERS)) for value in values]
    for value, f, p in zip(values, fast, plain):
        assert f == p, value
    taken = sum(all(kind == "Reading" for kind, *_ in f) for f in fast)
    assert 20 < taken < len(values) - 40  # both paths were exercised


def test_the_gateways_aggregates_are_decoded_without_orjson(monkeypatch):
    rs = [reading("wl-1", 1e9 + i, 3.0 + i / 10) for i in range(5)] + [reading("wx-1", 1e9, 2.0, "weather")]
    value = encode_aggregate([encode_reading(r) for r in rs])

    class NoOrjson:
        JSONDecodeError = orjson.JSONDecodeError

        @staticmethod
        def loads(value: bytes) -> None:
            raise AssertionError("the plain path was taken")

    monkeypatch.setattr(reading_records, "orjson", NoOrjson)
    assert readings_of(value, None, AGGREGATE_HEADERS) == rs
    assert [list(r.__dict__) for r in readings_of(value, None, AGGREGATE_HEADERS)] == [list(r.__dict__) for r in rs]
