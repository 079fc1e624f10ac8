"""``cityeye simulate --speed 0`` on long runs: publishing paces itself on the broker's acknowledgements."""

from __future__ import annotations

import asyncio

from cityeye.config import MqttSettings
from simulators.publisher import MqttPublisher, publish_paced


def test_publishing_as_fast_as_possible_survives_message_id_wrap(mqtt):
    n = 100_000  # more than the 65,535 MQTT message ids: weeks of readings
    messages = ((float(i), f"cityeye/test/water_level/s{i % 50}", b'{"ts":1,"values":{"level_m":1}}')
                for i in range(n))
    with MqttPublisher(MqttSettings(port=mqtt.port)) as pub:
        count = asyncio.run(publish_paced(pub, messages, speed=0, t0=0.0))
        assert count == n
        assert pub.acknowledged == pub.published == n
        assert pub.max_unacknowledged <= pub.window
