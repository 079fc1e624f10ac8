"""The stale (no-data) rule when the worker itself falls behind, against a real (Tansu) broker.

A worker that stalls (slow sends, a backlog after a restart, a broker
rollover) while its sensors keep reporting must not call them silent: their
readings wait in Kafka. A sensor silent while its partition's others keep
arriving still goes stale at the rule's time. (A whole silent partition going
stale on the wall clock: tests/test_streams_worker.py,
``test_stale_sensor_fires_on_the_clock_and_resolves_on_data``.)

The gauges report every 0.2 s of stream time, so they are stale after 1 s
without data (5 intervals); the worker ticks every 0.1 s.
"""

from __future__ import annotations

import asyncio
import time

import pytest

from cityeye.contracts import Reading, readings_topic, to_json
from cityeye.kafka import make_producer
from cityeye.sensor_registry import load_registry
from simulators import DEMO_REGISTRY
from streams.command import StreamsWorker
from tests.kafka_helpers import wait_until
from tests.test_streams_worker import T0, WL, alerts

pytestmark = pytest.mark.timeout(90)

OTHER = "wl-minhang-01"  # a second gauge, sent to WL's partition
INTERVAL_S, STALE_S = 0.2, 1.0
PARTITION = 0


def fast_registry():
    registry = load_registry(DEMO_REGISTRY)
    for sid in (WL, OTHER):
        registry.sensors[sid] = registry.get(sid).model_copy(update={"interval_s": INTERVAL_S})
    return registry


def gauge(sid: str, i: int) -> Reading:
    t = T0 + INTERVAL_S * i
    return Reading(sid, "water_level", "huangpu", t, {"level_m": 3.0 + 0.001 * i}, t,
                   f"cityeye/huangpu/water_level/{sid}")


async def produce(settings, readings: list[Reading]) -> None:
    """Send ``readings`` as single records, all to the same partition of ``readings.water_level``."""
    producer = make_producer(settings.kafka, "test-backlog")
    await producer.start()
    try:
        for r in readings:
            await producer.send(readings_topic(r.kind), to_json(r), key=r.sensor_id.encode(), partition=PARTITION)
        await producer.flush()
    finally:
        await producer.stop()


def stale_firings(events) -> list[tuple[str, float]]:
    return [(e.sensor_id, e.started_at) for e in events if e.rule.endswith(".stale") and e.state == "firing"]


async def test_a_backlog_held_back_by_a_stalled_worker_raises_no_stale_alert(settings):
    """The worker stalls right after a batch (as in slow sends) while the gauge's next readings queue up.

    The first tick after the stall sees the partition behind its high
    watermark: the gauge's clock does not run on the wall time, so the only
    stale alert is the true one, after the last reading when the data stops.
    """
    first, queued = [gauge(WL, i) for i in range(6)], [gauge(WL, i) for i in range(6, 16)]
    async with StreamsWorker(settings, registry=fast_registry(), tick_interval_s=0.1) as worker:
        runtime = worker.streams.runtime
        stall, release = asyncio.Event(), asyncio.Event()
        process = runtime._process_events

        async def stalled_after(events) -> None:  # runs inside the runtime's lock, like a slow send
            await process(events)
            if runtime.readings >= len(first) and not stall.is_set():
                stall.set()
                await release.wait()

        runtime._process_events = stalled_after
        await produce(settings, first)
        assert await wait_until(stall.is_set)
        stalled_at = time.monotonic()
        tp = runtime.tp_of[WL]
        await produce(settings, queued)
        assert await wait_until(lambda: (worker.app.consumer.highwater(tp) or 0) >= len(first + queued))
        await asyncio.sleep(max(0.0, stalled_at + 2 * STALE_S - time.monotonic()))  # a stall past the limit
        release.set()  # the clock tick waiting for the lock runs first, with the backlog still queued
        assert await wait_until(lambda: runtime.readings >= len(first + queued))
        got = await alerts(settings, lambda evs: stale_firings(evs))
    assert stale_firings(got) == [(WL, pytest.approx(queued[-1].ts + STALE_S, abs=1e-3))]


async def test_a_sensor_silent_while_its_partition_reports_still_goes_stale_on_time(settings):
    """OTHER stops after 3 readings, WL goes on in the same partition: OTHER is stale at its last + 1 s."""
    readings = []
    for i in range(16):
        readings.append(gauge(WL, i))
        if i < 3:
            readings.append(gauge(OTHER, i))
    async with StreamsWorker(settings, registry=fast_registry(), tick_interval_s=0.1) as worker:
        await produce(settings, readings)
        got = await alerts(settings, lambda evs: len(stale_firings(evs)) >= 2)
        assert worker.streams.runtime.tp_of[OTHER] == worker.streams.runtime.tp_of[WL]
    assert stale_firings(got)[0] == (OTHER, pytest.approx(T0 + 2 * INTERVAL_S + STALE_S, abs=1e-3))
    assert (WL, pytest.approx(T0 + 15 * INTERVAL_S + STALE_S, abs=1e-3)) in stale_firings(got)  # then the whole partition
