"""SinkConsumer: at-least-once from alerts.events into InfluxDB, dead letters, restarts."""

from __future__ import annotations

import asyncio
import base64
import json
import urllib.request

import pytest

from alerts.notification import Backoff
from alerts.sinks.base import BaseSink, SinkWriteError
from alerts.sinks.consumer import SinkConsumer
from alerts.sinks.deadletter import DeadLetterWriter, SinkDeadLetter
from alerts.sinks.influx import InfluxSink
from cityeye.contracts import (
    TOPIC_ALERTS,
    TOPIC_ALERTS_DEADLETTER,
    decode_alert_event,
    to_json,
)
from cityeye.kafka import make_producer
from launch.servers import free_port
from tests.kafka_helpers import produce, read_topic, wait_until
from tests.sink_helpers import make_event, query


async def start_consumer(kafka, sink, group="sink-influx"):
    producer = make_producer(kafka, "dlq")
    await producer.start()
    stop = asyncio.Event()
    consumer = SinkConsumer(kafka, sink, deadletters=DeadLetterWriter(producer), group=group,
                            backoff=Backoff(initial_s=0.05, max_s=0.2))
    task = asyncio.create_task(consumer.run(stop))

    async def finish():
        stop.set()
        await asyncio.wait_for(task, 20)
        await producer.stop()

    return consumer, finish


def events_records(events):
    return [(e.alert_id.encode(), to_json(e)) for e in events]


async def test_nothing_is_committed_while_influx_is_down_and_a_restart_loses_nothing(kafka, influx_settings,
                                                                                    influx_server):
    events = [make_event(i) for i in range(6)]
    await produce(kafka.settings, TOPIC_ALERTS, events_records(events[:4]))

    dead = influx_settings.model_copy(update={"url": f"http://127.0.0.1:{free_port()}"})
    consumer, finish = await start_consumer(kafka.settings, InfluxSink(dead, timeout_s=1))
    assert await wait_until(lambda: consumer.stats["flush_failures"] >= 2 and len(consumer.sink) >= 1)
    await finish()
    assert consumer.stats["commits"] == 0 and consumer.stats["written"] == 0

    await produce(kafka.settings, TOPIC_ALERTS, events_records(events[4:]))
    consumer, finish = await start_consumer(kafka.settings, InfluxSink(influx_settings))
    db = influx_settings.database
    ok = await wait_until(lambda: len(query(influx_server.url, db, "SELECT * FROM alert_events")) == 6)
    await finish()
    assert ok
    rows = query(influx_server.url, db, "SELECT * FROM alert_events")
    assert sorted(r["event_id"] for r in rows) == sorted(e.event_id for e in events)
    assert consumer.stats["commits"] >= 1

    # committed: a third run writes only what is new
    await produce(kafka.settings, TOPIC_ALERTS, events_records([make_event(6)]))
    consumer, finish = await start_consumer(kafka.settings, InfluxSink(influx_settings))
    ok = await wait_until(lambda: consumer.stats["written"] >= 1)
    await finish()
    assert ok and consumer.stats["written"] == 1


class _FailsWhileStopping(BaseSink):
    """A sink whose write fails, and the consumer is told to stop during that write."""

    name = "stopping"

    def __init__(self):
        super().__init__(batch_size=1, flush_interval_s=0.01)
        self.writes = 0

    async def write(self, batch):
        self.writes += 1
        self.stop_event.set()  # the stop arrives while the flush is failing
        raise SinkWriteError("receiver unreachable")


async def test_a_stop_during_a_failing_flush_ends_the_consumer_cleanly(kafka):
    """run() returns (no exception) and commits nothing: the items are read again later."""
    await produce(kafka.settings, TOPIC_ALERTS, events_records([make_event(i) for i in range(3)]))
    sink = _FailsWhileStopping()
    consumer, finish = await start_consumer(kafka.settings, sink, group="sink-stopping")
    assert await wait_until(lambda: sink.writes >= 1)
    await finish()  # raised SinkWriteError before the fix
    assert consumer.stats["commits"] == 0 and consumer.stats["written"] == 0


async def test_malformed_records_are_dead_lettered_and_the_loop_goes_on(kafka, influx_settings, influx_server):
    good = make_event(1)
    bad_records = [
        (b"k1", b"\xff\xfenot json"),
        (b"k2", b'["a list"]'),
        (b"k3", json.dumps({**json.loads(to_json(make_event(2))), "severity": "purple"}).encode()),
        (b"k4", json.dumps({**json.loads(to_json(make_event(3))), "updated_at": "yesterday"}).encode()),
    ]
    await produce(kafka.settings, TOPIC_ALERTS, bad_records[:2] + events_records([good]) + bad_records[2:])
    consumer, finish = await start_consumer(kafka.settings, InfluxSink(influx_settings))
    db = influx_settings.database
    ok = await wait_until(lambda: consumer.stats["dead_lettered"] == 4 and consumer.stats["written"] == 1)
    await finish()
    assert ok
    rows = query(influx_server.url, db, "SELECT * FROM alert_events")
    assert [r["event_id"] for r in rows] == [good.event_id]
    letters = [SinkDeadLetter.from_json(r.value) for r in await read_topic(kafka.settings, TOPIC_ALERTS_DEADLETTER, 4)]
    assert len(letters) == 4
    reasons = " | ".join(l.reason for l in letters)
    assert "not JSON" in reasons and "not a JSON object" in reasons and "purple" in reasons
    assert "updated_at must be a finite number" in reasons
    first = next(l for l in letters if "not JSON" in l.reason)
    assert first.sink == "influx" and first.topic == TOPIC_ALERTS and first.offset is not None
    assert base64.b64decode(first.payload_b64) == b"\xff\xfenot json"


async def test_points_influx_refuses_are_dead_lettered_with_the_status(kafka, influx_settings, influx_server):
    ok_event, refused = make_event(8, value=None), make_event(9)
    # a string 'value' in the same shard makes the float 'value' of alert events a type conflict (HTTP 400)
    conflict = f'alert_events,sensor=other value="text" {round(refused.updated_at * 1e9) - 10**9}'.encode()
    req = urllib.request.Request(f"{influx_server.url}/write?db={influx_settings.database}", data=conflict)
    urllib.request.urlopen(req, timeout=10).read()
    await produce(kafka.settings, TOPIC_ALERTS, events_records([ok_event, refused]))
    consumer, finish = await start_consumer(kafka.settings, InfluxSink(influx_settings))
    ok = await wait_until(lambda: consumer.stats["dead_lettered"] == 1 and consumer.stats["commits"] >= 1)
    await finish()
    assert ok
    (letter,) = [SinkDeadLetter.from_json(r.value) for r in await read_topic(kafka.settings, TOPIC_ALERTS_DEADLETTER, 1)]
    assert letter.status == 400 and letter.event_id == refused.event_id and "conflict" in letter.reason
    assert decode_alert_event(letter.payload.encode()).event_id == refused.event_id
    rows = query(influx_server.url, influx_settings.database, "SELECT * FROM alert_events WHERE sensor = 'wl-8'")
    assert [r["event_id"] for r in rows] == [ok_event.event_id]


def test_decode_accepts_the_contract_and_names_the_problem():
    event = make_event(1, labels={"team": "flood"})
    assert decode_alert_event(to_json(event)) == event
    with pytest.raises(ValueError, match="sensor_id"):
        decode_alert_event(json.dumps({**json.loads(to_json(event)), "sensor_id": 5}).encode())
    with pytest.raises(ValueError, match="value"):
        decode_alert_event(json.dumps({**json.loads(to_json(event)), "value": "NaN"}).encode())
    with pytest.raises(ValueError, match="empty"):
        decode_alert_event(None)
    lone = to_json(event).replace(b"level high #1", b"level \\ud800 high")
    assert decode_alert_event(lone).message == "level \ufffd high"
