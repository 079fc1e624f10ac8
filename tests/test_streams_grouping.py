"""streams.grouping.by_sensor: a record's readings regrouped by sensor, each sensor's events unchanged."""

from __future__ import annotations

from cityeye.contracts import Reading
from cityeye.reading_records import RejectedReading
from streams.grouping import by_sensor
from streams.sensor_engine import SensorEngine
from bench.bench_streams import make_readings, make_registry


def test_each_sensors_items_together_in_their_order_sensors_in_first_appearance_order():
    items = make_readings(make_registry(3), 9)  # a, b, c, a, b, c, a, b, c
    grouped = by_sensor(items)
    assert [r.sensor_id for r in grouped] == [items[0].sensor_id] * 3 + [items[1].sensor_id] * 3 + [items[2].sensor_id] * 3
    assert [r.ts for r in grouped[:3]] == sorted(r.ts for r in grouped[:3])
    assert sorted(map(id, grouped)) == sorted(map(id, items))


def test_no_sensor_twice_keeps_the_items_and_rejected_items_are_kept():
    items = make_readings(make_registry(4), 4)
    assert by_sensor(items) is items
    bad = RejectedReading(b"x", "not JSON")
    mixed = [items[0], bad, items[1], items[0], bad]
    assert by_sensor(mixed) == [items[0], items[0], bad, bad, items[1]]


def test_grouped_readings_give_every_sensor_the_same_events():
    registry = make_registry(30)
    readings = make_readings(registry, 30 * 300)
    plain, grouped = SensorEngine(registry), SensorEngine(registry)
    want = [e for off, r in enumerate(readings) for e in plain.process(r, position=off // 150)]
    got = []
    for start in range(0, len(readings), 150):  # records of 150 readings, 5 of each sensor
        record: list[Reading] = readings[start:start + 150]
        got += [e for r in by_sensor(record) for e in grouped.process(r, position=start // 150)]
    assert want and sorted(e.event_id for e in got) == sorted(e.event_id for e in want)
    assert _by_alert(got) == _by_alert(want)
    assert all(plain.snapshot(sid) == grouped.snapshot(sid) for sid in plain.sensor_ids())


def _by_alert(events):
    """Each alert's event ids in the order they came."""
    out: dict[str, list[str]] = {}
    for e in events:
        out.setdefault(e.alert_id, []).append(e.event_id)
    return out
