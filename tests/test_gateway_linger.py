"""The gateway's intake linger (``ingest.intake_linger_ms``): a light stream is taken a few messages at a
time, a backlog at once.

A gateway that keeps up with a live stream would otherwise make a batch of
each wake-up's few messages and pay a batch's fixed cost (Kafka records and
requests, acks, wake-ups) for each. The bridge is fed here the way paho's
thread feeds it (:meth:`MqttBridge._on_publishes` from another thread); the
gateway's batches on a real Mosquitto and Tansu are counted at the end.
"""

from __future__ import annotations

import asyncio
import threading
import time

from cityeye.config import IngestSettings, MqttSettings
from cityeye.sensor_registry import load_registry
from ingest.bridge import MqttBridge
from ingest.gateway import Gateway
from simulators.publisher import MqttPublisher
from tests.gateway_helpers import payloads
from tests.kafka_helpers import wait_until


def _run(mids: range) -> list[tuple[bytes, int, bytes]]:
    return [(b"cityeye/d/water_level/s", mid, b"{}") for mid in mids]


def _feed_later(bridge: MqttBridge, delay: float, mids: range) -> threading.Thread:
    """Hand ``mids`` to the bridge from another thread after ``delay`` s, as paho's network thread does."""
    def feed() -> None:
        time.sleep(delay)
        bridge._on_publishes(bridge.client, _run(mids))
    thread = threading.Thread(target=feed)
    thread.start()
    return thread


async def _take_with_a_second_run(linger: float) -> list[int]:
    bridge = MqttBridge(MqttSettings(), asyncio.get_running_loop(), max_unacked=100)
    first, second = _feed_later(bridge, 0.02, range(1, 3)), _feed_later(bridge, 0.1, range(3, 6))
    taken = await bridge.take(1000, linger)
    first.join(), second.join()
    return [m.mid for m in taken]


async def test_a_lingering_take_waits_for_the_messages_that_arrive_soon_after_the_first():
    assert await _take_with_a_second_run(linger=0.4) == [1, 2, 3, 4, 5]


async def test_without_linger_a_take_returns_the_first_wake_ups_messages():
    assert await _take_with_a_second_run(linger=0.0) == [1, 2]


async def test_messages_already_waiting_are_taken_at_once_and_a_full_batch_does_not_linger():
    bridge = MqttBridge(MqttSettings(), asyncio.get_running_loop(), max_unacked=100)
    bridge._on_publishes(bridge.client, _run(range(1, 4)))
    t0 = time.monotonic()
    assert [m.mid for m in await bridge.take(1000, linger=5.0)] == [1, 2, 3]  # the caller was busy: a backlog
    waiter = asyncio.create_task(bridge.take(2, linger=5.0))
    await asyncio.sleep(0.02)
    bridge._on_publishes(bridge.client, _run(range(4, 7)))
    assert [m.mid for m in await asyncio.wait_for(waiter, 2.0)] == [4, 5]  # as many as asked: no wait
    assert time.monotonic() - t0 < 2.0


async def _batches_of_a_trickle(settings, linger_ms: float, count: int = 12) -> dict:
    """The gateway's counters once ``count`` readings published 10 ms apart are in Kafka."""
    settings = settings.model_copy(update={"ingest": IngestSettings(intake_linger_ms=linger_ms)})
    gateway = Gateway(settings, load_registry(settings.registry))
    await gateway.start()
    try:
        def publish() -> None:
            with MqttPublisher(settings.mqtt) as pub:
                for topic, body, _ in payloads(count, time.time() - 3600):
                    pub.publish(topic, body)
                    time.sleep(0.01)
                pub.flush(60)
        await asyncio.to_thread(publish)
        assert await wait_until(lambda: gateway.stats()["messages"] >= count, 30, every=0.01), \
            f"not all forwarded: {gateway.stats()}"
        return gateway.stats()
    finally:
        await gateway.stop()


async def test_a_gateway_forwards_a_trickle_in_fewer_batches_with_a_linger(settings):
    lingering = await _batches_of_a_trickle(settings, linger_ms=500)
    assert lingering["accepted"] == 12 and lingering["batches"] <= 2
    eager = await _batches_of_a_trickle(settings, linger_ms=0)
    assert eager["accepted"] == 12 and eager["batches"] >= 6
