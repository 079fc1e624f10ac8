"""One bad record never blocks a partition, on a real (Tansu) Kafka broker.

Malformed records (not JSON, the wrong schema, a JSON-escaped lone surrogate
in a text field) sit on the same partition as good records, ahead of them:
each becomes a dead letter and the records behind it are processed. So for
the stream worker (readings) and the dispatcher (alert events, through its
router and partition consumer). The sinks' consume path has its own such
tests (test_sink_consumer: non-JSON, lone surrogates); the gateway's are in
test_gateway_hostile_input and test_gateway_fuzz.
"""

from __future__ import annotations

import base64
import json

import pytest

from cityeye.contracts import TOPIC_DEADLETTER, DeadLetter, readings_topic, to_json
from streams.command import StreamsWorker
from tests.alerting_helpers import config, event
from tests.test_alerts_dispatch import Running, dispatcher_settings, home
from tests.test_alerts_dispatch import produce as produce_alerts
from tests.test_alerts_dispatch import wait_until as wait_for
from tests.kafka_helpers import wait_until
from tests.test_streams_worker import WL, alerts, expected_events, has, produce, read_topic, water_series

pytestmark = pytest.mark.timeout(90)


def poison(reading_json: bytes) -> list[bytes]:
    """Bad records built from one good reading's JSON."""
    good = json.loads(reading_json)
    lone = reading_json.replace(b'"mqtt_topic":"', b'"mqtt_topic":"\\ud800')
    return [
        b"\xff{not json",
        json.dumps({**good, "ts": "yesterday"}).encode(),
        json.dumps({**good, "values": [4.6]}).encode(),
        json.dumps({**good, "sensor_id": "\ud800"}).encode(),  # ASCII JSON: "\\ud800"; key is WL: mismatch
        json.dumps({**good, "values": {"level_m": "\ud800"}}).encode(),
        lone.replace(b'"level_m":4.0', b'"level_m":NaN'),
    ]


async def test_malformed_readings_are_dead_lettered_and_later_ones_processed(settings):
    levels = [4.0] * 3 + [4.6] * 4 + [4.0] * 4
    wl = water_series(levels)
    bad = poison(to_json(wl[0]))
    key = WL.encode()
    async with StreamsWorker(settings) as worker:
        # the bad records go first, on the partition of WL's readings (same key)
        await produce(settings, [], [(readings_topic("water_level"), key, value) for value in bad])
        await produce(settings, wl)
        want = [e for e in expected_events(wl) if e.rule == "water_level.warning"]
        got = await alerts(settings, has(len(want)))
        dead = [DeadLetter.from_json(v) for v in await read_topic(settings, TOPIC_DEADLETTER, has(len(bad)))]
        assert await wait_until(lambda: worker.streams.runtime.readings >= len(wl))
        assert worker.streams.runtime.readings == len(wl)
        assert worker.streams.runtime.dead_letters == len(bad)

    assert [(e.state, e.severity) for e in got if e.rule == "water_level.warning"] == [
        ("firing", "yellow"), ("resolved", "yellow")]
    assert len(dead) == len(bad)
    assert all(d.reason.startswith("stream worker: ") for d in dead)
    assert sorted(base64.b64decode(d.payload_b64) for d in dead) == sorted(bad)
    surrogate = next(d for d in dead if d.sensor_id and d.sensor_id != WL)
    assert surrogate.sensor_id == "\ud800"  # carried through as its JSON escape, decoded back


async def test_malformed_alert_events_are_dead_lettered_and_later_ones_dispatched(kafka, tmp_path):
    """The dispatcher's router and partition consumer: bad records ahead of good ones on one partition."""
    good = event("wl-01")
    lone = event("wl-02", message="level \ud800 high")  # to_json writes the lone surrogate as its JSON escape
    bad = [b"\xff{not json", json.dumps({**json.loads(to_json(good)), "started_at": "yesterday"}).encode(),
           b'{"alert_id": "\\ud800"}']
    async with Running(dispatcher_settings(kafka, tmp_path), config()) as d:
        # all keyed alike: one partition, the bad records first
        await produce_alerts(kafka.settings, [*bad, to_json(lone), to_json(good)])
        await wait_for(lambda: {a.sensor_id for a in home(d).engine.active.values()} == {"wl-01", "wl-02"},
                       what="both good events dispatched")
        await wait_for(lambda: len(home(d).store.deadletters("alert_event")) == len(bad), what="dead letters")
        messages = {a.sensor_id: a.message for a in home(d).engine.active.values()}
        reasons = [dl["reason"] for dl in home(d).store.deadletters("alert_event")]
    assert messages["wl-02"] == "level \ufffd high"
    assert any("not JSON" in r for r in reasons) and any("started_at" in r for r in reasons), reasons
