"""MQTT notifier against the real broker of the ``mqtt`` fixture."""

from __future__ import annotations

import json
import queue

import paho.mqtt.client as paho
import pytest

from alerts.notifiers import build_notifier
from alerts.notifiers.mqtt import mqtt_messages
from cityeye.errors import ConfigError, RetryableDeliveryError
from launch.servers import free_port
from tests.notify_helpers import sample_alert, sample_notification


@pytest.fixture
def subscriber(mqtt):
    got: queue.Queue = queue.Queue()
    subscribed: queue.Queue = queue.Queue()
    client = paho.Client(paho.CallbackAPIVersion.VERSION2, client_id="board-test")
    client.on_message = lambda c, u, m: got.put((m.topic, m.payload, m.qos))
    client.on_subscribe = lambda *a: subscribed.put(True)
    client.connect("127.0.0.1", mqtt.port)
    client.subscribe("cityeye/out/#", qos=1)
    client.loop_start()
    subscribed.get(timeout=10)
    yield got
    client.loop_stop()
    client.disconnect()


async def test_messages_arrive_per_district_topic(mqtt, subscriber):
    notifier = build_notifier({"name": "boards", "type": "mqtt", "port": mqtt.port, "password": "mqtt-secret"})
    alerts = [sample_alert(1), sample_alert(2, district="xu/hui#", sensor_id="wl-9", severity="red"),
              sample_alert(3, sensor_id="wl-3", severity="yellow")]
    n = sample_notification(alerts=alerts)
    await notifier.send(n)
    await notifier.send(sample_notification(version=2, alerts=[sample_alert(1, state="resolved")], status="resolved"))
    await notifier.close()
    received = [subscriber.get(timeout=10) for _ in range(4)]
    by_topic: dict[str, list[dict]] = {}
    for topic, payload, qos in received:
        assert qos == 1
        by_topic.setdefault(topic, []).append(json.loads(payload))
    assert set(by_topic) == {"cityeye/out/huangpu/orange", "cityeye/out/huangpu/yellow", "cityeye/out/xu_hui_/red"}
    first = by_topic["cityeye/out/huangpu/orange"][0]
    assert first["id"] == n.id and first["status"] == "firing" and first["alerts"][0]["sensor"] == "wl-1"
    assert first["alerts"][0]["msg"] == sample_alert(1).message
    assert by_topic["cityeye/out/huangpu/orange"][1]["status"] == "resolved"
    assert by_topic["cityeye/out/xu_hui_/red"][0]["severity"] == "red"


def test_topic_template_fields():
    messages = mqtt_messages(sample_notification(), "city/{receiver}/{kind}/{rule}/{sensor_id}/{status}")
    assert list(messages) == ["city/ops/water_level/flood_level/wl-1/firing"]


@pytest.mark.parametrize("template", ["a/{unknown}", "a/+/{district}", "a/#", "a/{district"])
def test_bad_templates_are_config_errors(template):
    with pytest.raises(ConfigError, match="topic_template"):
        build_notifier({"name": "boards", "type": "mqtt", "topic_template": template})


async def test_unreachable_broker_is_retryable():
    notifier = build_notifier({"name": "boards", "type": "mqtt", "port": free_port(), "password": "mqtt-secret",
                               "username": "u", "timeout_s": 2})
    with pytest.raises(RetryableDeliveryError) as info:
        await notifier.send(sample_notification())
    await notifier.close()
    assert "mqtt-secret" not in str(info.value)


async def test_reconnects_after_the_broker_restarts(mqtt, subscriber):
    notifier = build_notifier({"name": "boards", "type": "mqtt", "port": mqtt.port, "timeout_s": 3})
    await notifier.send(sample_notification(version=1))
    assert subscriber.get(timeout=10)[0] == "cityeye/out/huangpu/orange"
    mqtt.stop()
    with pytest.raises(RetryableDeliveryError):
        await notifier.send(sample_notification(version=2))
    mqtt.start()
    await notifier.send(sample_notification(version=3))
    await notifier.close()
