"""The detector clock's tick in chunks: batches of readings run between them, and the events stay the same.

streams/agents.py ticks :attr:`~streams.agents.DetectorRuntime.tick_chunk` sensors per turn of the
runtime's lock, sending each chunk's events before letting go. No broker: the runtime of
bench/bench_tick_burst.py (a producer and a snapshot table that acknowledge at once).
"""

from __future__ import annotations

import asyncio
import json
import logging

import pytest

from bench.bench_tick_burst import burst_runtime, reading_events

pytestmark = pytest.mark.timeout(60)

SENSORS = 300


async def _fed(chunk: int, rounds: int = 3):
    """A runtime whose ``SENSORS`` gauges read ``rounds`` times, then were silent for 400 s (all stale)."""
    runtime, lock, shift = burst_runtime(SENSORS)
    runtime.tick_chunk = chunk
    offsets: dict = {}
    for round_ in range(rounds):
        await runtime.process_events(reading_events(runtime, SENSORS, round_, SENSORS, offsets))
    await runtime.writer.write_now()
    runtime.alerts._producer.values.clear()
    shift[0] += 400.0
    return runtime, lock, offsets


async def test_a_batch_taken_during_a_big_tick_is_processed_before_the_tick_ends(caplog):
    """The lock is let go between chunks: a reading that arrives while 300 sensors go stale does not wait for all
    of them (fails when the tick holds the lock for every sensor)."""
    caplog.set_level(logging.WARNING)
    runtime, lock, offsets = await _fed(chunk=50)
    order: list[str] = []
    ticking = asyncio.create_task(runtime.tick())
    ticking.add_done_callback(lambda _: order.append("tick done"))
    await asyncio.sleep(0)  # the tick took the lock and works on its first chunk
    reading = reading_events(runtime, SENSORS, 3, SENSORS, offsets)[:1]  # the next offset of its partition
    before = runtime.readings
    await runtime.process_events(reading)
    order.append("reading done")
    await ticking
    assert runtime.readings == before + 1
    assert order == ["reading done", "tick done"], "the batch waited for the whole tick"
    assert len(lock.holds) >= SENSORS // 50, "the tick did not let the lock go between chunks"
    stale = [json.loads(v) for v in runtime.alerts._producer.values]
    others = [e["sensor_id"] for e in stale if e["sensor_id"] != "wl-0000"]
    assert sorted(others) == [f"wl-{i:04d}" for i in range(1, SENSORS)]  # each once, in whatever chunk


#: what an event of a tick takes from the wall clock (the tick's time), different in two runs of the same code
_TICK_TIME_FIELDS = ("updated_at", "value", "message", "event_id")


def _events(values: list[bytes]) -> list[dict]:
    """The events without what the tick's wall-clock time sets, in alert id order."""
    events = [{k: v for k, v in json.loads(raw).items() if k not in _TICK_TIME_FIELDS} for raw in values]
    return sorted(events, key=lambda e: e["alert_id"])


def _snapshots(kept: dict) -> dict:
    """Per sensor: the snapshot's position, last reading time and open episodes (id, rule, start, severity)."""
    return {sid: (snap["position"], snap["last_ts"], sorted(
        (ep["alert_id"], ep["rule"], ep["started_at"], ep["severity"]) for ep in snap["episodes"].values()))
        for sid, snap in kept.items()}


async def test_a_tick_in_chunks_emits_and_snapshots_what_one_pass_does():
    """The same events and snapshots whether the sensors are ticked 7 at a time or all at once."""
    results = []
    for chunk in (7, 10**6):
        runtime, lock, _ = await _fed(chunk=chunk)
        await runtime.tick()
        await runtime.writer.write_now()
        results.append((_events(runtime.alerts._producer.values), _snapshots(runtime.snapshots.kept),
                        runtime.events_sent, len(lock.holds)))
    (chunked, chunked_kept, n, turns), (whole, whole_kept, m, one_pass_turns) = results
    assert n == m == SENSORS and len(chunked) == SENSORS
    assert {e["rule"] for e in chunked} == {"water_level.stale"}
    assert chunked == whole
    assert chunked_kept == whole_kept and all(eps for _, _, eps in chunked_kept.values())
    assert turns > one_pass_turns
