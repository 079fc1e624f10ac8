"""Helpers of the gateway process tests: readings to publish, a publisher, a gateway's config file and process."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import yaml

from cityeye.config import KafkaSettings, MqttSettings
from cityeye.contracts import format_ts, mqtt_topic, parse_ts, readings_topic
from cityeye.reading_records import readings_in
from ingest.readback import read_until
from simulators.publisher import MqttPublisher
from tests.kafka_helpers import wait_until

__all__ = ["SENSORS", "payloads", "publish_all", "gateway_config", "gateway_proc", "held_while_kafka_stops"]

REPO = Path(__file__).resolve().parent.parent
SENSORS = [("huangpu", "wl-huangpu-01"), ("minhang", "wl-minhang-01")]


def payloads(count: int, t0: float) -> list[tuple[str, bytes, tuple[str, float]]]:
    """``count`` water-level readings over the demo gauges: (MQTT topic, payload, (sensor, ts as stored))."""
    out = []
    for i in range(count):
        district, sid = SENSORS[i % len(SENSORS)]
        ts = t0 + i
        body = json.dumps({"ts": format_ts(ts), "values": {"level_m": 2.0 + (i % 100) / 100}}).encode()
        out.append((mqtt_topic(district, "water_level", sid), body, (sid, parse_ts(format_ts(ts)))))
    return out


def publish_all(mqtt: MqttSettings, items, pace_s: float = 0.0) -> None:
    """Publish ``items`` (from :func:`payloads`) at QoS 1, sleeping ``pace_s`` every 50; return once the
    broker acknowledged every one (it has accepted them)."""
    with MqttPublisher(mqtt) as pub:
        for n, (topic, body, _) in enumerate(items):
            pub.publish(topic, body)
            if pace_s and n % 50 == 49:
                time.sleep(pace_s)
        pub.flush(120)


def gateway_config(path: Path, kafka: KafkaSettings, mqtt: dict, registry: str, **sections: dict) -> Path:
    """Write a gateway's config file at ``path``: Kafka (Tansu) at ``kafka.bootstrap``, the ``mqtt`` section,
    the ``registry`` and any further ``sections`` (``ingest={...}``); returns ``path``."""
    path.write_text(yaml.safe_dump({"kafka": {"bootstrap": kafka.bootstrap, "profile": "tansu"}, "mqtt": mqtt,
                                    "registry": registry, **sections}))
    return path


def gateway_proc(config: Path, log: Path, *extra_args: str) -> subprocess.Popen:
    """``cityeye gateway --config config [extra_args]`` as a child process, its output appended to ``log``."""
    with open(log, "ab") as out:
        return subprocess.Popen([sys.executable, "-m", "launch.cli", "gateway", "--config", str(config), *extra_args],
                                stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, cwd=REPO,
                                env={**os.environ, "PYTHONUNBUFFERED": "1"})


async def held_while_kafka_stops(gateway, settings, kafka, items, window: int) -> None:
    """Publish ``items`` (from :func:`payloads`) while Kafka is stopped (SIGSTOP) and check that the started
    ``gateway`` holds exactly ``window`` of them unacknowledged and acknowledges none; then let Kafka go on,
    check that every reading reaches it, and stop the gateway."""
    kafka.proc.send_signal(signal.SIGSTOP)  # nothing can be acked while Kafka does not answer
    try:
        await asyncio.to_thread(publish_all, settings.mqtt, items)
        assert await wait_until(lambda: gateway.stats()["unacked"] >= window, 20, every=0.05), gateway.stats()
        await asyncio.sleep(0.5)
        assert gateway.stats()["unacked"] == window and gateway.stats()["messages"] == 0
    finally:
        kafka.proc.send_signal(signal.SIGCONT)
    wl = readings_topic("water_level")
    want = {key for _, _, key in items}
    got = await read_until(settings.kafka, [wl], lambda o: {(r.sensor_id, r.ts) for r in readings_in(o[wl])} >= want)
    await gateway.stop()
    assert {(r.sensor_id, r.ts) for r in readings_in(got[wl])} == want
