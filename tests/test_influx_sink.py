"""InfluxSink against a real influxd: v1 /write, v2 via influxdb-client, escaping, failures."""

from __future__ import annotations

import asyncio
import logging
import unicodedata
import uuid

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from alerts.sinks.base import SinkWriteError
from alerts.sinks.influx import InfluxSink, alert_event_point
from alerts.sinks.line_protocol import TRAILING_BACKSLASH, Point
from cityeye.config import InfluxSettings
from launch.servers import free_port
from tests.influx_v2_adapter import InfluxV2Adapter
from tests.sink_helpers import make_event, query

HOSTILE = [
    "plain",
    "with space",
    "com,ma",
    "equals=sign",
    'double"quote',
    "single'quote",
    "new\nline",
    "back\\slash",
    "trailing\\",
    "\\\\double",
    "unicode 水位 ⚠ 🌧",
    "tab\there",
    ' ,="\\ mixed',
]


async def test_v1_writes_alert_events_with_tags_and_fields(influx_settings, influx_server):
    sink = InfluxSink(influx_settings.model_copy(update={"retention_policy": "autogen"}))
    for i in range(3):
        sink.add(make_event(i))
    assert await sink.flush() == []
    assert len(sink) == 0
    await sink.close()
    rows = query(influx_server.url, influx_settings.database, "SELECT * FROM alert_events ORDER BY time")
    assert [r["sensor"] for r in rows] == ["wl-0", "wl-1", "wl-2"]
    first = rows[0]
    assert first["time"] == "2025-06-15T15:06:40Z"
    assert (first["district"], first["rule"], first["severity"], first["state"], first["kind"]) == (
        "huangpu", "flood_level", "orange", "firing", "water_level")
    assert first["value"] == pytest.approx(4.2) and first["threshold"] == 4.0
    assert first["message"] == "level high #0" and first["alert_id"] == "a0"
    assert first["event_id"] == make_event(0).event_id


async def test_rewriting_the_same_event_stores_it_once(influx_settings, influx_server):
    sink = InfluxSink(influx_settings)
    await sink.write_points([make_event(1), make_event(1)])
    await sink.write_points([make_event(1)])
    await sink.close()
    rows = query(influx_server.url, influx_settings.database, "SELECT * FROM alert_events")
    assert len(rows) == 1


async def test_hostile_strings_round_trip_through_influxd(influx_settings, influx_server):
    sink = InfluxSink(influx_settings)
    points = [Point("hostile m,x", {"tag": text, "i": str(i)}, {"f": text, "odd key, =x": i}, time_ns=1000 + i)
              for i, text in enumerate(HOSTILE)]
    assert await sink.write_points(points) == []
    await sink.close()
    rows = query(influx_server.url, influx_settings.database, 'SELECT * FROM "hostile m,x"')
    assert len(rows) == len(HOSTILE)
    by_i = {int(r["i"]): r for r in rows}
    for i, text in enumerate(HOSTILE):
        row = by_i[i]
        assert row["f"] == text, "string fields are exact"
        assert row["odd key, =x"] == i
        # tags cannot carry control characters (they become spaces) nor end in a
        # backslash (trailing ones become U+29F5); everything else is exact
        expected_tag = text.replace("\n", " ").replace("\t", " ")
        if expected_tag.endswith("\\"):
            expected_tag = expected_tag[:-1] + TRAILING_BACKSLASH
        assert row["tag"] == expected_tag


async def test_non_finite_and_missing_values_are_left_out(influx_settings, influx_server):
    sink = InfluxSink(influx_settings)
    event = make_event(5, value=None, threshold=None)
    rejected = await sink.write_points([event, Point("m", {"t": "x"}, {"v": float("nan")}, time_ns=1)])
    await sink.close()
    assert len(rejected) == 1 and "no valid field" in rejected[0].reason
    rows = query(influx_server.url, influx_settings.database, "SELECT * FROM alert_events")
    assert "value" not in rows[0] and "threshold" not in rows[0] and rows[0]["message"] == "level high #5"


async def test_a_point_the_server_refuses_is_isolated_from_the_batch(influx_settings, influx_server):
    sink = InfluxSink(influx_settings)
    good = [Point("typed", {"s": str(i)}, {"v": 1.5}, time_ns=i + 1) for i in range(3)]
    bad = Point("typed", {"s": "bad"}, {"v": "a string where a float was"}, time_ns=10)
    await sink.write_points(good[:1])
    rejected = await sink.write_points([good[1], bad, good[2]])
    await sink.close()
    assert [r.item for r in rejected] == [bad] and rejected[0].status == 400
    rows = query(influx_server.url, influx_settings.database, "SELECT * FROM typed")
    assert sorted(r["s"] for r in rows) == ["0", "1", "2"]


async def test_unknown_retention_policy_is_not_silently_ignored(influx_settings):
    sink = InfluxSink(influx_settings.model_copy(update={"retention_policy": "no_such_rp"}))
    sink.add(make_event(1))
    with pytest.raises(SinkWriteError):
        await sink.flush()
    await sink.close()
    assert len(sink) == 1


async def test_unreachable_server_raises_and_keeps_the_buffer(caplog):
    caplog.set_level(logging.DEBUG)
    settings = InfluxSettings(api="v1", url=f"http://127.0.0.1:{free_port()}", database="x",
                              username="writer", password="s3cret-pw")
    sink = InfluxSink(settings, timeout_s=2)
    sink.add(make_event(1))
    with pytest.raises(SinkWriteError) as info:
        await sink.flush()
    await sink.close()
    assert len(sink) == 1
    assert "unreachable" in str(info.value) and "s3cret-pw" not in str(info.value)
    assert "s3cret-pw" not in caplog.text and "s3cret-pw" not in repr(settings)


async def test_missing_database_is_a_retryable_failure(influx_server):
    sink = InfluxSink(InfluxSettings(api="v1", url=influx_server.url, database="no_such_db_here"))
    sink.add(make_event(1))
    with pytest.raises(SinkWriteError, match="404"):
        await sink.flush()
    await sink.close()
    assert len(sink) == 1


async def test_v2_write_api_through_the_1_8_compatibility_mapping(influx_server, influx_db):
    adapter = InfluxV2Adapter(influx_server.url)
    url = await adapter.start()
    try:
        settings = InfluxSettings(api="v2", url=url, bucket=f"{influx_db}/autogen", org="ops",
                                  username="writer", password="pw-secret-1")
        sink = InfluxSink(settings)
        sink.add(make_event(1))
        sink.add(Point("alert_history", {"alert_id": "a1", "action": "acknowledged"},
                       {"actor": "duty officer 李", "detail": 'said "ok"'}, time_ns=1_750_000_000_000_000_000))
        assert await sink.flush() == []
        await sink.close()
    finally:
        await adapter.stop()
    req = adapter.requests[0]
    assert req["bucket"] == f"{influx_db}/autogen" and req["org"] == "ops" and req["user"] == "writer"
    assert req["precision"] == "ns"
    rows = query(influx_server.url, influx_db, "SELECT * FROM alert_events")
    assert rows[0]["sensor"] == "wl-1" and rows[0]["event_id"] == make_event(1).event_id
    hist = query(influx_server.url, influx_db, "SELECT * FROM alert_history")
    assert hist[0]["actor"] == "duty officer 李" and hist[0]["detail"] == 'said "ok"'


async def test_v2_error_status_is_retryable_and_hides_the_token(influx_server, caplog):
    caplog.set_level(logging.DEBUG)
    adapter = InfluxV2Adapter(influx_server.url)
    url = await adapter.start()
    try:
        sink = InfluxSink(InfluxSettings(api="v2", url=url, bucket="missing_db", token="tok-very-secret"))
        sink.add(make_event(2))
        with pytest.raises(SinkWriteError) as info:
            await sink.flush()
        await sink.close()
    finally:
        await adapter.stop()
    assert "404" in str(info.value) and "tok-very-secret" not in str(info.value) + caplog.text
    assert len(sink) == 1


def test_alert_event_point_line():
    line = alert_event_point(make_event(0, message='bad "x", y')).to_line()
    assert line.startswith("alert_events,district=huangpu,kind=water_level,rule=flood_level,"
                           "sensor=wl-0,severity=orange,state=firing ")
    assert 'message="bad \\"x\\", y"' in line and line.endswith(" 1750000000000000000")


TEXT = st.text(st.characters(blacklist_categories=("Cs",)), min_size=1, max_size=30)


@settings(max_examples=8, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(texts=st.lists(TEXT, min_size=1, max_size=25, unique=True))
def test_any_text_round_trips_as_string_field_and_tag(influx_server, texts):
    db = f"h_{uuid.uuid4().hex[:10]}"
    influx_server.create_database(db)
    points = [Point("prop", {"tag": t, "i": str(i)}, {"f": t}, time_ns=i + 1) for i, t in enumerate(texts)]

    async def write():
        sink = InfluxSink(InfluxSettings(api="v1", url=influx_server.url, database=db))
        try:
            return await sink.write_points(points)
        finally:
            await sink.close()

    assert asyncio.run(write()) == []
    rows = {int(r["i"]): r for r in query(influx_server.url, db, "SELECT * FROM prop")}
    assert len(rows) == len(texts)
    for i, text in enumerate(texts):
        assert rows[i]["f"] == text
        tag = "".join(" " if unicodedata.category(c) == "Cc" else c for c in text)
        stripped = tag.rstrip("\\")
        tag = stripped + TRAILING_BACKSLASH * (len(tag) - len(stripped))
        assert rows[i].get("tag") == tag


async def test_lone_surrogates_are_replaced_not_fatal(influx_settings, influx_server):
    sink = InfluxSink(influx_settings)
    assert await sink.write_points([Point("s", {"t": "a\ud800b"}, {"f": "x\udfffy"}, time_ns=1)]) == []
    await sink.close()
    (row,) = query(influx_server.url, influx_settings.database, "SELECT * FROM s")
    assert row["t"] == "a\ufffdb" and row["f"] == "x\ufffdy"


def test_alert_event_time_is_exact_to_the_microsecond():
    assert alert_event_point(make_event(0, updated_at=1_750_000_000.123456)).time_ns == 1_750_000_000_123_456_000
