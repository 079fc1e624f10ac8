"""No false stale (no-data) alerts while the gateway upstream of the worker is paused (issue #10).

A real gateway process, Mosquitto, Tansu and a worker: two gauges publish
every 0.2 s (stale after 1 s without data, 5 intervals) with their wall-clock
time. The gateway is stopped (SIGSTOP, as a CPU-starved gateway looks to the
rest of the pipeline) for 3 s while the gauges go on publishing: their
messages queue at the broker, nothing reaches Kafka, and the worker, caught up
with Kafka, used to count that wall time as silence and fire a stale alert
for every gauge. With the gateway's intake progress (cityeye/intake_progress.py)
the only stale alerts are the true ones, once the gauges stop publishing.
"""

from __future__ import annotations

import asyncio
import json
import signal
import threading
import time

import pytest

from cityeye.contracts import format_ts, mqtt_topic, parse_ts
from simulators.publisher import MqttPublisher
from streams.command import StreamsWorker
from tests.gateway_helpers import gateway_config, gateway_proc
from tests.kafka_helpers import wait_until
from tests.test_streams_backlog import INTERVAL_S, OTHER, STALE_S, fast_registry, stale_firings
from tests.test_streams_worker import WL, alerts

pytestmark = pytest.mark.timeout(120)

GAUGES = {WL: "huangpu", OTHER: "minhang"}
PAUSE_S = 3 * STALE_S


class Gauges(threading.Thread):
    """Both gauges publish their level every ``INTERVAL_S`` of wall time (ts = now) until stopped."""

    def __init__(self, settings) -> None:
        super().__init__(daemon=True)
        self.settings, self.done, self.last = settings, threading.Event(), {}

    def run(self) -> None:
        with MqttPublisher(self.settings.mqtt, client_id="test-gauges") as pub:
            while not self.done.is_set():
                ts = time.time()
                for sid, district in GAUGES.items():
                    body = json.dumps({"ts": format_ts(ts), "values": {"level_m": 3.0}}).encode()
                    pub.publish(mqtt_topic(district, "water_level", sid), body)
                    self.last[sid] = parse_ts(format_ts(ts))
                time.sleep(max(0.0, ts + INTERVAL_S - time.time()))
            pub.flush(30)


async def test_a_paused_gateway_raises_no_stale_alert_and_silence_still_does(settings, tmp_path):
    log = tmp_path / "gateway.log"
    config = gateway_config(tmp_path / "gateway.yaml", settings.kafka,
                            {"port": settings.mqtt.port, "client_id": "gw-paused"}, settings.registry,
                            ingest={"stats_interval_s": 0.2, "intake_progress_interval_s": 0.1})
    gateway = gateway_proc(config, log)
    gauges = Gauges(settings)
    try:
        async with StreamsWorker(settings, registry=fast_registry(), tick_interval_s=0.1) as worker:
            runtime = worker.streams.runtime
            assert await wait_until(lambda: "MQTT subscribed" in log.read_text(), timeout=30), log.read_text()
            gauges.start()
            assert await wait_until(lambda: set(GAUGES) <= set(runtime.tp_of) and runtime.readings >= 20,
                                    timeout=30), log.read_text()[-2000:]
            gateway.send_signal(signal.SIGSTOP)  # the gauges go on; the broker queues their messages
            await asyncio.sleep(PAUSE_S)
            # the pipeline-level signal (cityeye_intake_lag_seconds, alert CityEyeIntakeStalled) shows the pause
            assert runtime.clocks.intake_lags().get("gw-paused", 0.0) >= PAUSE_S - 0.5, runtime.clocks.intake_lags()
            gateway.send_signal(signal.SIGCONT)
            await asyncio.sleep(2.0)
            gauges.done.set()
            await asyncio.to_thread(gauges.join, 30)
            # the gauges are silent now: each goes stale once, 1 s (5 intervals) after its last reading
            got = await alerts(settings, lambda evs: {sid for sid, _ in stale_firings(evs)} >= set(GAUGES)
                               and time.time() > max(gauges.last.values()) + STALE_S + 2.0)
    finally:
        gauges.done.set()
        gateway.send_signal(signal.SIGCONT)
        gateway.terminate()
        gateway.wait(timeout=20)
    firings = stale_firings(got)
    assert sorted(sid for sid, _ in firings) == sorted(GAUGES), firings  # none during the pause
    for sid, started_at in firings:
        assert started_at == pytest.approx(gauges.last[sid] + STALE_S, abs=1e-3)
