"""How many MQTT messages the broker sends the gateway ahead of its acknowledgements (issue #10).

The gateway acknowledges a message only once Kafka has its reading, so the
broker's in-flight window bounds the messages it forwards per Kafka round
trip. An MQTT 5 gateway announces its window (``mqtt.receive_maximum``); for
MQTT 3.1.1, the default protocol, Mosquitto's ``max_inflight_messages`` sets it
(default 20). Both the test/embedded broker and the deployed one give a 3.1.1
gateway the same window as an MQTT 5 one.
"""

from __future__ import annotations

import asyncio
import re
import signal
import time
from pathlib import Path

from cityeye.config import MqttSettings
from cityeye.contracts import readings_topic
from cityeye.reading_records import readings_in
from cityeye.sensor_registry import load_registry
from ingest.gateway import Gateway
from ingest.readback import read_until
from tests.gateway_helpers import payloads, publish_all

DEPLOYED_CONF = Path(__file__).resolve().parent.parent / "deploy" / "mosquitto.conf"


def test_the_deployed_broker_gives_the_gateway_its_receive_maximum_in_flight():
    """deploy/mosquitto.conf sets ``max_inflight_messages`` to the gateway's default window (not Mosquitto's 20)."""
    found = re.findall(r"^max_inflight_messages\s+(\d+)\s*$", DEPLOYED_CONF.read_text(), flags=re.M)
    assert [int(n) for n in found] == [MqttSettings().receive_maximum]


async def test_an_mqtt311_gateway_holds_its_receive_maximum_while_kafka_is_down(settings, kafka):
    """With MQTT 3.1.1 the test broker sends the gateway ``receive_maximum`` messages ahead of its acks, as
    an MQTT 5 gateway would be sent: it holds exactly that many, unacknowledged, while Kafka does not answer,
    and every reading reaches Kafka once it does."""
    window = settings.mqtt.receive_maximum
    assert settings.mqtt.protocol == "3.1.1"
    gateway = Gateway(settings, load_registry(settings.registry))
    await gateway.start()
    items = payloads(window + 300, time.time() - 5000)
    kafka.proc.send_signal(signal.SIGSTOP)  # nothing can be acked while Kafka does not answer
    try:
        await asyncio.to_thread(publish_all, settings.mqtt, items)
        deadline = time.monotonic() + 20
        while gateway.stats()["unacked"] < window:
            assert time.monotonic() < deadline, gateway.stats()
            await asyncio.sleep(0.05)
        await asyncio.sleep(0.5)
        assert gateway.stats()["unacked"] == window and gateway.stats()["messages"] == 0
    finally:
        kafka.proc.send_signal(signal.SIGCONT)
    wl = readings_topic("water_level")
    want = {key for _, _, key in items}
    got = await read_until(settings.kafka, [wl], lambda o: {(r.sensor_id, r.ts) for r in readings_in(o[wl])} >= want)
    await gateway.stop()
    assert {(r.sensor_id, r.ts) for r in readings_in(got[wl])} == want
