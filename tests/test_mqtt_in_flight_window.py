"""How many MQTT messages the broker sends the gateway ahead of its acknowledgements (issue #10).

The gateway acknowledges a message only once Kafka has its reading, so the
broker's in-flight window bounds the messages it forwards per Kafka round
trip. An MQTT 5 gateway announces its window (``mqtt.receive_maximum``); for
MQTT 3.1.1, the default protocol, Mosquitto's ``max_inflight_messages`` sets it
(default 20). Both the test/embedded broker and the deployed one give a 3.1.1
gateway the same window as an MQTT 5 one.
"""

from __future__ import annotations

import re
import time
from pathlib import Path

from cityeye.config import MqttSettings
from cityeye.sensor_registry import load_registry
from ingest.gateway import Gateway
from tests.gateway_helpers import held_while_kafka_stops, payloads

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
    await held_while_kafka_stops(gateway, settings, kafka, payloads(window + 300, time.time() - 5000), window)
