"""One bad record never blocks a partition: the stream worker on a real (Tansu) Kafka broker.

Malformed records (not JSON, the wrong schema, a JSON-escaped lone surrogate
in a text field) sit on the same partition as good readings, ahead of them:
each becomes a dead letter and the readings behind it are processed. The
sinks' and the dispatcher's consume paths have their own such tests
(test_sink_consumer, test_alerts_dispatch); the gateway's are in
test_gateway_hostile_input.
"""

from __future__ import annotations

import base64
import json

import pytest

from cityeye.contracts import TOPIC_DEADLETTER, DeadLetter, readings_topic, to_json
from streams.command import StreamsWorker
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
