"""Webhook forwarder: retries with one Idempotency-Key, dead letters, signatures."""

from __future__ import annotations

import asyncio
import json

from alerts.notification import Backoff
from alerts.notifiers.http import SIGNATURE_HEADER, verify_signature
from alerts.sinks.consumer import SinkConsumer
from alerts.sinks.deadletter import DeadLetterWriter, SinkDeadLetter
from alerts.sinks.webhook_forwarder import WebhookForwarder
from cityeye.config import WebhookSettings
from cityeye.contracts import TOPIC_ALERTS, TOPIC_ALERTS_DEADLETTER, to_json
from cityeye.kafka import make_producer
from tests.alerting_helpers import Receiver
from tests.kafka_helpers import produce, read_topic, wait_until
from tests.sink_helpers import SECRET, hook_settings, make_event

async def run_forwarder(kafka, settings: WebhookSettings, until):
    producer = make_producer(kafka, "dlq")
    await producer.start()
    stop = asyncio.Event()
    consumer = SinkConsumer(kafka, WebhookForwarder(settings), deadletters=DeadLetterWriter(producer),
                            backoff=Backoff(initial_s=0.05, max_s=0.2))
    task = asyncio.create_task(consumer.run(stop))
    ok = await wait_until(lambda: until(consumer) or task.done())
    stop.set()
    await asyncio.wait_for(task, 20)
    await producer.stop()
    assert ok, consumer.stats
    return consumer


async def test_retries_500_twice_then_delivers_once_with_one_key(kafka):
    event = make_event(1)
    await produce(kafka.settings, TOPIC_ALERTS, [(b"a1", to_json(event))])
    async with Receiver(script=[500, (503, {"Retry-After": "0"}), 200]) as rx:
        consumer = await run_forwarder(kafka.settings, hook_settings(rx.url()), lambda c: c.stats["commits"] >= 1)
    assert len(rx.requests) == 3
    assert {r.headers["Idempotency-Key"] for r in rx.requests} == {event.event_id}
    assert all(verify_signature(r.body, SECRET, r.headers[SIGNATURE_HEADER]) for r in rx.requests)
    assert json.loads(rx.requests[-1].body)["alert_id"] == event.alert_id
    assert consumer.stats["dead_lettered"] == 0 and consumer.stats["written"] == 1


async def test_400_goes_to_the_dead_letter_topic(kafka):
    refused, fine = make_event(1), make_event(2)
    await produce(kafka.settings, TOPIC_ALERTS, [(b"a1", to_json(refused)), (b"a1", to_json(fine))])
    async with Receiver(script=[400]) as rx:
        await run_forwarder(kafka.settings, hook_settings(rx.url()),
                            lambda c: c.stats["dead_lettered"] == 1 and c.stats["written"] == 1)
    assert [r.headers["Idempotency-Key"] for r in rx.requests] == [refused.event_id, fine.event_id]
    (record,) = await read_topic(kafka.settings, TOPIC_ALERTS_DEADLETTER, 1)
    letter = SinkDeadLetter.from_json(record.value)
    assert letter.sink == "webhook" and letter.status == 400 and letter.event_id == refused.event_id
    assert record.key == refused.event_id.encode()
    assert json.loads(letter.payload)["event_id"] == refused.event_id
    assert SECRET not in record.value.decode()


async def test_gives_up_after_the_last_attempt_and_dead_letters(kafka):
    event = make_event(3)
    await produce(kafka.settings, TOPIC_ALERTS, [(b"a3", to_json(event))])
    async with Receiver(default=502) as rx:
        await run_forwarder(kafka.settings, hook_settings(rx.url(), max_attempts=3),
                            lambda c: c.stats["dead_lettered"] == 1)
    assert len(rx.requests) == 3
    (record,) = await read_topic(kafka.settings, TOPIC_ALERTS_DEADLETTER, 1)
    letter = SinkDeadLetter.from_json(record.value)
    assert "gave up after 3 attempts" in letter.reason and letter.status == 502
