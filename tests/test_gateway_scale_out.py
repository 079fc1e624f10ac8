"""Several gateways on one MQTT 5 shared subscription, with a real Mosquitto and a real Tansu.

Each gateway has its own client id and persistent session; ``mqtt.share_group``
makes them subscribe to ``$share/<group>/<filter>`` for each of its ``topic_filters`` and Mosquitto hands
each message to one of them. A gateway killed with SIGKILL loses nothing it
accepted: what it held unacknowledged stays in its session and comes back
when it reconnects (what Mosquitto 2.0 does, measured below and in
docs/contracts.md, "Several gateways").
"""

from __future__ import annotations

import asyncio
import re
import signal
import time
from collections import Counter

import pytest

from cityeye.contracts import readings_topic
from cityeye.reading_records import readings_in
from cityeye.sensor_registry import load_registry
from ingest.gateway import Gateway
from ingest.readback import read_until
from tests.gateway_helpers import gateway_config, gateway_proc, held_while_kafka_stops, payloads, publish_all

pytestmark = pytest.mark.timeout(180)


def shared(settings, client_id: str):
    mqtt = settings.mqtt.model_copy(update={"client_id": client_id, "protocol": "5", "share_group": "cityeye-gateways"})
    return settings.model_copy(update={"mqtt": mqtt})


async def test_two_gateways_share_the_device_stream(settings):
    registry = load_registry(settings.registry)
    first, second = Gateway(shared(settings, "gw-a"), registry), Gateway(shared(settings, "gw-b"), registry)
    assert first.settings.mqtt.subscriptions == [f"$share/cityeye-gateways/{f}" for f in settings.mqtt.topic_filters]
    await first.start()
    await second.start()
    items = payloads(2000, time.time() - 5000)
    await asyncio.to_thread(publish_all, settings.mqtt, items)
    wl = readings_topic("water_level")
    want = {key for _, _, key in items}
    got = await read_until(settings.kafka, [wl], lambda o: {(r.sensor_id, r.ts) for r in readings_in(o[wl])} >= want)
    deadline = time.monotonic() + 30
    while first.stats()["messages"] + second.stats()["messages"] < len(items):
        assert time.monotonic() < deadline
        await asyncio.sleep(0.05)
    a, b = first.stats()["accepted"], second.stats()["accepted"]
    await first.stop()
    await second.stop()
    assert a + b == len(items) and a > 0 and b > 0, (a, b)  # each got a part, nothing twice
    assert len(readings_in(got[wl])) == len(items)


async def test_kill_9_of_one_shared_gateway_loses_no_accepted_reading(settings, tmp_path):
    """Gateway A (a process) is killed with SIGKILL mid-stream while B (in this process) goes on;
    A restarts with the same client id. Every published reading ends up in Kafka."""
    mqtt = {"port": settings.mqtt.port, "client_id": "gw-a", "protocol": "5", "share_group": "cityeye-gateways"}
    config = gateway_config(tmp_path / "gw-a.yaml", settings.kafka, mqtt, settings.registry,
                            ingest={"stats_interval_s": 0.2})
    log = tmp_path / "gw-a.log"
    proc = gateway_proc(config, log)
    b = Gateway(shared(settings, "gw-b"), load_registry(settings.registry))
    await b.start()
    try:
        deadline = time.monotonic() + 30
        while "MQTT subscribed" not in log.read_text():
            assert time.monotonic() < deadline, log.read_text()
            await asyncio.sleep(0.1)
        items = payloads(6000, time.time() - 10_000)
        publisher = asyncio.create_task(asyncio.to_thread(publish_all, settings.mqtt, items, 0.01))
        while not re.search(r"'accepted': [1-9]", log.read_text()):  # A is taking its share
            assert time.monotonic() < deadline + 30, log.read_text()[-2000:]
            await asyncio.sleep(0.05)
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=10)
        b_at_kill = b.stats()["accepted"]
        await publisher
        await asyncio.sleep(1.0)
        b_while_a_down = b.stats()["accepted"] - b_at_kill
        proc = gateway_proc(config, log)  # same client id: its session (and what it held) is still there
        wl = readings_topic("water_level")
        want = {key for _, _, key in items}
        got = await read_until(settings.kafka, [wl],
                               lambda o: {(r.sensor_id, r.ts) for r in readings_in(o[wl])} >= want, timeout=90)
    finally:
        proc.terminate()
        proc.wait(timeout=20)
        await b.stop()
    seen = Counter((r.sensor_id, r.ts) for r in readings_in(got[wl]))
    assert set(seen) == want
    duplicates = sum(seen.values()) - len(seen)
    print(f"shared subscription, kill -9 of A: B accepted {b.stats()['accepted']} of {len(items)} "
          f"({b_while_a_down} while A was down); duplicates in Kafka: {duplicates}")


async def test_mqtt5_receive_maximum_sets_the_in_flight_window(settings, kafka):
    """With MQTT 5 the gateway's Receive Maximum, not Mosquitto's max_inflight_messages (1000 in the
    test broker), bounds what the broker sends ahead of the acks: more in flight per Kafka round trip."""
    mqtt = settings.mqtt.model_copy(update={"protocol": "5", "receive_maximum": 300})
    gateway = Gateway(settings.model_copy(update={"mqtt": mqtt}), load_registry(settings.registry))
    await gateway.start()
    await held_while_kafka_stops(gateway, settings, kafka, payloads(600, time.time() - 5000), window=300)


async def test_by_default_the_broker_may_have_as_many_in_flight_as_the_gateway_holds(settings, kafka):
    """The default Receive Maximum is the gateway's own bound (``ingest.max_unacked``): Mosquitto sends
    a draining session's backlog in large runs (less broker CPU per reading, larger Kafka batches). Held
    while Kafka is stopped, none of it is acknowledged before Kafka has it."""
    mqtt = settings.mqtt.model_copy(update={"protocol": "5"})
    # no intake probes: the gateway's own probe messages would be held unacknowledged beside the 2,500
    ingest = settings.ingest.model_copy(update={"intake_progress_interval_s": 0})
    gateway = Gateway(settings.model_copy(update={"mqtt": mqtt, "ingest": ingest}), load_registry(settings.registry))
    assert mqtt.receive_maximum == settings.ingest.max_unacked
    await gateway.start()
    # more than the former default window (1000): all of them held unacknowledged
    await held_while_kafka_stops(gateway, settings, kafka, payloads(2500, time.time() - 5000), window=2500)
