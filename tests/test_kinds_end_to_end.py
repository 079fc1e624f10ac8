"""Kinds declared by configuration on real servers: MQTT (Mosquitto) → gateway → Kafka (Tansu) → worker → alert.

One sensor of the shipped example kind ``manhole`` and one of a kind a
kinds file in the settings declares (``river_temperature``, its check in a
rules file): no code knows either.
"""

from __future__ import annotations

import asyncio
import json
import time

import pytest

from cityeye.contracts import TOPIC_DEADLETTER, AlertEvent, DeadLetter, all_topics, format_ts, mqtt_topic
from cityeye.kinds import kinds_declared
from cityeye.sensor_registry import load_registry
from ingest.gateway import Gateway
from simulators.publisher import MqttPublisher
from streams.command import StreamsWorker
from tests.test_kinds import RIVER_TEMPERATURE
from tests.test_streams_worker import alerts, read_topic

pytestmark = pytest.mark.timeout(90)

REGISTRY = """\
sensors:
  - {id: mh-1, kind: manhole, district: huangpu, lat: 31.2, lon: 121.5, interval_s: 60,
     levels: {warning_depth_m: 1.5, shaft_depth_m: 3.0}}
  - {id: rt-1, kind: river_temperature, district: huangpu, lat: 31.2, lon: 121.5, interval_s: 60}
"""
RULES = """\
kinds:
  river_temperature:
    warm:
      type: warning_levels
      field: water_temp_c
      levels: {yellow: 28, orange: 32}
"""


def publish(settings, items) -> None:
    with MqttPublisher(settings.mqtt) as pub:
        for topic, payload in items:
            pub.publish(topic, payload)
        pub.flush()


async def test_readings_of_configured_kinds_flow_from_mqtt_to_alerts(settings, tmp_path):
    for name, text in (("kinds.yaml", RIVER_TEMPERATURE), ("registry.yaml", REGISTRY), ("rules.yaml", RULES)):
        (tmp_path / name).write_text(text)
    settings = settings.model_copy(update={"kinds": str(tmp_path / "kinds.yaml"), "rules": str(tmp_path / "rules.yaml"),
                                           "registry": str(tmp_path / "registry.yaml")})
    with kinds_declared(settings.kinds):
        registry = load_registry(settings.registry)
        assert "readings.river_temperature" in all_topics()
        t0 = time.time() - 600
        manhole = mqtt_topic("huangpu", "manhole", "mh-1")
        river = mqtt_topic("huangpu", "river_temperature", "rt-1")
        items = [(manhole, json.dumps({"ts": format_ts(t0 + 60 * i), "values": {"tilt_deg": tilt, "h2s_ppm": 0.5}}))
                 for i, tilt in enumerate([0.5, 0.5, 20.0, 20.0, 20.0])]
        items += [(river, json.dumps({"ts": format_ts(t0 + 60 * i), "values": {"water_temp_c": temp}}))
                  for i, temp in enumerate([24.0, 29.0, 29.5])]
        items += [(river, json.dumps({"ts": format_ts(t0 + 300), "values": {"water_temp_c": 99.0}}))]
        gateway = Gateway(settings, registry)
        await gateway.start()
        try:
            async with StreamsWorker(settings, registry=registry):
                await asyncio.to_thread(publish, settings, [(t, p.encode()) for t, p in items])
                firing = {("manhole.cover", "orange"), ("river_temperature.warm", "yellow")}
                # under load Tansu may answer NotLeaderForPartition for a while; the gateway resends until taken
                got = await alerts(settings, lambda es: firing <= {(e.rule, e.severity) for e in es}, timeout=90)
                dead = [DeadLetter.from_json(v) for v in await read_topic(settings, TOPIC_DEADLETTER, lambda vs: vs)]
        finally:
            await gateway.stop()
    by_rule = {e.rule: e for e in got}
    assert {(e.rule, e.state, e.severity) for e in got} == {("manhole.cover", "firing", "orange"),
                                                           ("river_temperature.warm", "firing", "yellow")}
    assert isinstance(by_rule["manhole.cover"], AlertEvent) and by_rule["manhole.cover"].kind == "manhole"
    assert by_rule["manhole.cover"].value == 20.0 and by_rule["manhole.cover"].threshold == 15.0
    assert by_rule["river_temperature.warm"].kind == "river_temperature"
    assert by_rule["river_temperature.warm"].threshold == 28.0
    assert [d.reason.split(":")[0] for d in dead] == ["out_of_range"] and "water_temp_c" in dead[0].reason
