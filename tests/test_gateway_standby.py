"""The warm standby gateway (``cityeye gateway --standby READY_FILE``) of the broker rollover (issue #10).

A standby is built and connected to its Kafka broker, writes its ready file
and subscribes to nothing until SIGUSR1; then it takes over the persistent
MQTT session of the gateway it replaces (same client id). Real Mosquitto,
two real Tansus: the old gateway writes to one, the standby to the other,
so what each forwarded is told apart.
"""

from __future__ import annotations

import asyncio
import os
import re
import signal
import time
from pathlib import Path

import pytest

from cityeye.command import GO_SIGNAL, wait_for_go
from cityeye.config import KafkaSettings
from cityeye.contracts import readings_topic
from cityeye.kafka import ensure_topics, read_topic
from cityeye.reading_records import readings_in
from ingest.readback import read_until
from launch.servers import TansuServer
from tests.gateway_helpers import gateway_config, gateway_proc, payloads, publish_all

pytestmark = pytest.mark.timeout(240)

WL = readings_topic("water_level")


def _wait_for(what: str, cond, timeout: float, log: Path) -> None:
    deadline = time.monotonic() + timeout
    while not cond():
        assert time.monotonic() < deadline, f"{what}: not within {timeout:.0f} s; log: {log.read_text()[-3000:]}"
        time.sleep(0.05)


async def _keys(kafka: KafkaSettings) -> list[tuple[str, float]]:
    """(sensor, ts) of every reading on ``kafka``'s water-level topic now."""
    return [(r.sensor_id, r.ts) for records in (await read_topic(kafka, WL)).values() for r in readings_in(records)]


async def test_standby_subscribes_only_on_go_and_takes_over_after_a_kill_9_losing_nothing(settings, tmp_path):
    """The old gateway (Kafka A) is killed with SIGKILL mid-stream while the standby (Kafka B) waits, ready:
    nothing reaches B before the go; after it the standby drains the session: every reading the MQTT broker
    accepted is on A or B."""
    with TansuServer(workdir=tmp_path / "tansu-b") as tansu_b:
        kafka_b = KafkaSettings(bootstrap=tansu_b.bootstrap, profile="tansu")
        await ensure_topics(kafka_b)
        mqtt = {"port": settings.mqtt.port, "client_id": settings.mqtt.client_id}
        configs = {name: gateway_config(tmp_path / f"{name}.yaml", kafka, mqtt, settings.registry,
                                        ingest={"stats_interval_s": 0.2})
                   for name, kafka in (("old", settings.kafka), ("standby", kafka_b))}
        old_log, standby_log, ready = tmp_path / "old.log", tmp_path / "standby.log", tmp_path / "standby.ready"
        # both start at once (a process start is much of this test's time): the standby touches no MQTT before its go
        old = gateway_proc(configs["old"], old_log)
        standby = gateway_proc(configs["standby"], standby_log, "--standby", str(ready))
        try:
            _wait_for("the old gateway's subscription", lambda: "MQTT subscribed" in old_log.read_text(), 60, old_log)
            _wait_for("the standby's ready file", ready.exists, 60, standby_log)
            assert standby.poll() is None

            items = payloads(4000, time.time() - 10_000)
            publisher = asyncio.create_task(asyncio.to_thread(publish_all, settings.mqtt, items, 0.01))
            await asyncio.to_thread(_wait_for, "the old gateway at work",
                                    lambda: re.search(r"'accepted': [1-9]", old_log.read_text()), 60, old_log)
            old.send_signal(signal.SIGKILL)  # mid-stream: what it held unacknowledged stays in the session
            old.wait(timeout=10)
            await publisher  # every reading is accepted by the MQTT broker
            on_a = await _keys(settings.kafka)
            await asyncio.sleep(1.0)
            assert await _keys(kafka_b) == [], "the standby forwarded before its go"
            assert "MQTT connected" not in standby_log.read_text()
            assert 0 < len(on_a) < len(items), len(on_a)

            standby.send_signal(GO_SIGNAL)
            want = {key for _, _, key in items}
            got = await read_until(kafka_b, [WL], lambda o: {(r.sensor_id, r.ts) for r in readings_in(o[WL])}
                                   | set(on_a) >= want, timeout=90)
            on_b = [(r.sensor_id, r.ts) for r in readings_in(got[WL])]
        finally:
            for proc in (old, standby):
                if proc is not None and proc.poll() is None:
                    proc.terminate()
                    proc.wait(timeout=20)
    assert set(on_a) | set(on_b) == want
    assert len(on_b) >= len(items) - len(on_a)  # the standby forwarded the rest, some maybe twice (at-least-once)
    assert "standby: starting" in standby_log.read_text()
    # a clean stop, its log flushed before the process ended at once (cityeye.command.exit_now)
    assert standby.returncode == 0 and "gateway stopped" in standby_log.read_text(), standby_log.read_text()[-3000:]
    print(f"kill -9 of the old gateway: {len(on_a)} readings on the old broker, {len(on_b)} on the new one "
          f"({len(on_a) + len(on_b) - len(items)} twice) of {len(items)}")


async def test_a_standby_stopped_before_its_go_never_subscribes(settings, tmp_path):
    config = gateway_config(tmp_path / "standby.yaml", settings.kafka,
                            {"port": settings.mqtt.port, "client_id": settings.mqtt.client_id}, settings.registry)
    log, ready = tmp_path / "standby.log", tmp_path / "standby.ready"
    standby = gateway_proc(config, log, "--standby", str(ready))
    try:
        await asyncio.to_thread(_wait_for, "the ready file", ready.exists, 60, log)
    finally:
        standby.terminate()
        code = standby.wait(timeout=20)
    assert code == 0, log.read_text()[-3000:]
    assert "MQTT connected" not in log.read_text() and "standby: starting" not in log.read_text()


async def test_wait_for_go_writes_the_ready_file_then_returns_whether_the_signal_or_a_stop_came(tmp_path):
    stop = asyncio.Event()
    ready = tmp_path / "ready"
    waiting = asyncio.create_task(wait_for_go(ready, stop))
    while not ready.exists():
        await asyncio.sleep(0.01)
    os.kill(os.getpid(), GO_SIGNAL)
    assert await asyncio.wait_for(waiting, 5) is True
    os.kill(os.getpid(), GO_SIGNAL)  # a second go is ignored, not fatal
    ready.unlink()
    waiting = asyncio.create_task(wait_for_go(ready, stop))
    while not ready.exists():
        await asyncio.sleep(0.01)
    stop.set()
    assert await asyncio.wait_for(waiting, 5) is False
