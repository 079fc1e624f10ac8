"""Snapshots written in the background, against a real (Tansu) broker: the commit barrier holds.

The worker builds and sends snapshots outside its detector batches
(streams/snapshot_writer.py). Its readings offsets must not be committed past
a batch whose snapshots are not in the broker: after a crash the successor
would restore an older state and never see the readings in between again.
Here the snapshot sends are held back by hand (a gate in front of the table's
``send``): the group commits nothing while they wait, catches up once they
go, and a worker that dies with them unsent leaves a successor that rebuilds
the same episodes under the same alert ids.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest

from cityeye.contracts import readings_topic
from cityeye.kafka import read_topic
from streams.command import StreamsWorker
from tests.kafka_helpers import committed_total
from tests.test_streams_worker import WL, alerts, expected_events, produce, summary, wait_committed, water_series

pytestmark = pytest.mark.timeout(120)

#: Faust commits every 2.8 s: two commit intervals and a margin
COMMIT_WAIT_S = 7.0
FIRST = [4.0] * 3 + [4.6] * 4 + [4.62]  # yellow fires on the 4th 4.6 m reading
SECOND = [5.3] * 4 + [4.0] * 4  # orange, then resolved


def _gate_snapshot_sends(runtime: Any) -> asyncio.Event:
    """Hold every snapshot send of ``runtime`` until the returned event is set."""
    gate, send = asyncio.Event(), runtime.snapshots.send

    async def gated(sensor_id: str, value: dict[str, Any]) -> Any:
        await gate.wait()
        return await send(sensor_id, value)

    runtime.snapshots.send = gated
    return gate


async def test_offsets_wait_for_the_snapshots_and_follow_once_they_are_written(settings):
    readings = water_series(FIRST)
    async with StreamsWorker(settings) as worker:
        await worker.wait_ready()
        runtime = worker.streams.runtime
        gate = _gate_snapshot_sends(runtime)
        await produce(settings, readings)
        assert await alerts(settings, lambda evs: len(evs) >= 1)  # the alert event does not wait for snapshots
        await asyncio.sleep(COMMIT_WAIT_S)
        assert runtime.readings == len(readings)
        tp = runtime.tp_of[WL]
        assert runtime.writer.commit_limits().get(tp) == 0  # the first batch holds its partition at its start
        assert await committed_total(settings.kafka, readings_topic("water_level")) == 0
        gate.set()
        await wait_committed(settings, "water_level", len(readings), timeout=15)
        assert runtime.writer.commit_limits().get(tp) is None
        changelog = runtime.snapshots.table.changelog_topic.get_topic_name()
        position = runtime.engine.state(WL).position
    records = [r for part in (await read_topic(settings.kafka, changelog)).values() for r in part]
    latest = [json.loads(r.value) for r in records if json.loads(r.key) == WL][-1]
    assert latest["position"] == position  # the broker has the state that covers every committed reading


async def test_a_worker_dying_with_snapshots_unsent_leaves_the_successor_exact(settings):
    first, second = water_series(FIRST), water_series(SECOND, start=len(FIRST))
    want = [e for e in expected_events(first + second) if e.rule == "water_level.warning"]
    async with StreamsWorker(settings) as worker:
        await worker.wait_ready()
        runtime = worker.streams.runtime
        _gate_snapshot_sends(runtime)  # never opened: as if the process died before they left

        async def no_shutdown_snapshots() -> None:
            await runtime.alerts.close()

        runtime.on_shutdown = no_shutdown_snapshots
        await produce(settings, first)
        assert await alerts(settings, lambda evs: len(evs) >= 1)
        await asyncio.sleep(COMMIT_WAIT_S)
        assert runtime.readings == len(first)
    await runtime.writer.close()
    assert await committed_total(settings.kafka, readings_topic("water_level")) == 0  # the stop's final commit was held back too

    async with StreamsWorker(settings) as successor:
        await successor.wait_ready()
        await produce(settings, second)
        got = await alerts(settings, lambda evs: any(e.state == "resolved" for e in evs), timeout=60)
    warning = [e for e in got if e.rule == "water_level.warning"]
    # at-least-once: the redelivered readings repeat the yellow firing, as the very same event
    distinct = sorted({e.event_id: e for e in warning}.values(), key=lambda e: e.updated_at)
    assert summary(distinct) == summary(want)
    assert [(e.state, e.severity) for e in distinct] == [("firing", "yellow"), ("firing", "orange"),
                                                         ("resolved", "orange")]
    assert len({e.alert_id for e in distinct}) == 1
