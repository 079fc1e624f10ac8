"""Helpers of the gateway process tests: readings to publish, a publisher, a gateway as a process."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

from cityeye.config import MqttSettings
from cityeye.contracts import format_ts, mqtt_topic, parse_ts
from simulators.publisher import MqttPublisher

__all__ = ["SENSORS", "payloads", "publish_all", "gateway_proc"]

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


def gateway_proc(config: Path, log: Path, *extra_args: str) -> subprocess.Popen:
    """``cityeye gateway --config config [extra_args]`` as a child process, its output appended to ``log``."""
    with open(log, "ab") as out:
        return subprocess.Popen([sys.executable, "-m", "launch.cli", "gateway", "--config", str(config), *extra_args],
                                stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, cwd=REPO,
                                env={**os.environ, "PYTHONUNBUFFERED": "1"})
