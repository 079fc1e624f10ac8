"""The background snapshot writer and the commit barrier it holds (no broker: a table that records sends).

streams/snapshot_writer.py builds marked sensors' snapshots under the
runtime's lock, sends them outside it, and until the broker acknowledged a
snapshot the group may commit its readings partition no further than the
first offset of the batch that marked it; streams/transport.py lowers
Faust's commits to that and keeps the held-back acknowledgements for later.
"""

from __future__ import annotations

import asyncio
from collections import defaultdict
from types import SimpleNamespace
from typing import Any

import pytest
from faust.transport.consumer import Consumer as FaustConsumer
from faust.types import TP
from intervaltree import IntervalTree

from streams.snapshot_writer import SnapshotWriter
from streams.transport import _Consumer
from tests.kafka_helpers import wait_until

pytestmark = pytest.mark.timeout(20)

WL = TP("readings.water_level", 1)
WX = TP("readings.weather", 1)


class RecordingTable:
    """A snapshot table whose sends the test acknowledges (or fails) by hand."""

    def __init__(self) -> None:
        self.kept: dict[str, dict[str, Any]] = {}
        self.sent: list[tuple[str, dict[str, Any], asyncio.Future]] = []

    def keep(self, tp: TP, sensor_id: str, snapshot: dict[str, Any]) -> dict[str, Any]:
        value = {**snapshot, "topic": tp.topic, "partition": tp.partition}
        self.kept[sensor_id] = value
        return value

    async def send(self, sensor_id: str, value: dict[str, Any]) -> asyncio.Future:
        fut = asyncio.get_running_loop().create_future()
        self.sent.append((sensor_id, value, fut))
        return fut

    def ack_all(self) -> None:
        for _, _, fut in self.sent:
            if not fut.done():
                fut.set_result(None)


class Engine:
    """Sensor states the writer snapshots: a version per sensor, bumped by the 'agent'."""

    def __init__(self, lock: asyncio.Lock, tps: dict[str, TP]) -> None:
        self.lock, self.tps = lock, tps
        self.version: dict[str, int] = {sid: 0 for sid in tps}
        self.builds: list[str] = []
        self.built_unlocked = 0

    def build(self, sid: str) -> tuple[TP, dict[str, Any]] | None:
        if not self.lock.locked():
            self.built_unlocked += 1
        self.builds.append(sid)
        if sid not in self.tps:
            return None  # let go (a revoked partition)
        return self.tps[sid], {"sensor_id": sid, "version": self.version[sid]}


def _writer(tps: dict[str, TP], chunk: int = 32) -> tuple[SnapshotWriter, RecordingTable, Engine]:
    lock = asyncio.Lock()
    table, engine = RecordingTable(), Engine(lock, tps)
    return SnapshotWriter(table, engine.build, lock, chunk=chunk), table, engine


async def test_a_marked_snapshot_holds_its_partition_until_the_broker_acknowledges_it():
    writer, table, engine = _writer({"a": WL, "b": WL, "x": WX})
    assert writer.commit_limits().get(WL) is None
    writer.mark(WL, ["a", "b"], barrier=40)
    writer.mark(WX, ["x"], barrier=7)
    assert writer.commit_limits() == {WL: 40, WX: 7}
    assert await wait_until(lambda: len(table.sent) == 3, 5.0, every=0.001)  # built and sent in the background ...
    assert engine.built_unlocked == 0  # ... always under the runtime's lock
    assert writer.commit_limits() == {WL: 40, WX: 7}  # not acknowledged yet: still held
    table.sent[0][2].set_result(None)
    assert await wait_until(lambda: writer.written == 1, 5.0, every=0.001)
    assert writer.commit_limits().get(WL) == 40  # b is still in flight
    table.ack_all()
    assert await wait_until(lambda: writer.written == 3, 5.0, every=0.001)
    assert writer.commit_limits() == {}
    assert table.kept["a"] == {"sensor_id": "a", "version": 0, "topic": WL.topic, "partition": 1}
    await writer.close()


async def test_the_oldest_barrier_wins_and_a_sensor_marked_twice_is_built_once_with_its_newest_state():
    writer, table, engine = _writer({"a": WL})
    async with writer.lock:  # the agent holds the lock: nothing is built meanwhile
        writer.mark(WL, ["a"], barrier=10)
        engine.version["a"] = 1
        writer.mark(WL, ["a"], barrier=25)
        await asyncio.sleep(0.01)
        assert engine.builds == [] and writer.commit_limits().get(WL) == 10
    assert await wait_until(lambda: len(table.sent) == 1, 5.0, every=0.001)
    assert engine.builds == ["a"] and table.sent[0][1]["version"] == 1
    writer.mark(WL, ["a"], barrier=30)  # marked again while the first is in flight
    assert await wait_until(lambda: len(table.sent) == 2, 5.0, every=0.001)
    assert writer.commit_limits().get(WL) == 10  # the in-flight snapshot's barrier still holds
    table.ack_all()
    assert await wait_until(lambda: writer.written == 2, 5.0, every=0.001)
    assert writer.commit_limits().get(WL) is None
    await writer.close()


async def test_chunks_let_the_agent_in_between():
    writer, table, engine = _writer({f"s{i}": WL for i in range(10)}, chunk=3)
    writer.mark(WL, [f"s{i}" for i in range(10)], barrier=0)
    await asyncio.sleep(0)  # the writer takes the lock for its first chunk
    async with writer.lock:  # the agent's batch gets the lock after one chunk
        assert len(engine.builds) == 3
    table.ack_all()
    assert await wait_until(lambda: len(table.sent) == 10, 5.0, every=0.001)
    table.ack_all()
    assert await wait_until(lambda: writer.commit_limits().get(WL) is None, 5.0, every=0.001)
    await writer.close()


async def test_write_now_builds_what_is_pending_and_waits_for_every_acknowledgement():
    writer, table, engine = _writer({"a": WL, "b": WL})
    async with writer.lock:  # revocation: the runtime holds the lock
        writer.mark(WL, ["a", "b", "gone"], barrier=3)
        done = asyncio.ensure_future(writer.write_now())
        assert await wait_until(lambda: len(table.sent) == 2, 5.0, every=0.001)
        assert not done.done()  # sent, not acknowledged
        table.ack_all()
        await asyncio.wait_for(done, 2)
    assert writer.commit_limits().get(WL) is None and writer.pending == {}
    assert sorted(engine.builds) == ["a", "b", "gone"]  # a sensor let go is skipped, its barrier released
    await writer.close()


async def test_a_failed_send_keeps_the_partition_held_and_stops_the_agent():
    writer, table, _ = _writer({"a": WL})
    writer.mark(WL, ["a"], barrier=5)
    assert await wait_until(lambda: len(table.sent) == 1, 5.0, every=0.001)
    table.sent[0][2].set_exception(RuntimeError("broker gone"))
    assert await wait_until(lambda: writer._failure is not None, 5.0, every=0.001)
    assert writer.commit_limits().get(WL) == 5  # never acknowledged: never committed past
    with pytest.raises(RuntimeError, match="snapshot writer failed"):
        writer.mark(WL, ["a"], barrier=6)
    await writer.close()


def _consumer(barriers: list, committed: dict[TP, int]) -> SimpleNamespace:
    """The state Faust's consumer keeps for commits, with the app's commit barriers."""
    return SimpleNamespace(app=SimpleNamespace(commit_barriers=barriers),
                           _committed_offset=defaultdict(lambda: None, committed),
                           _acked=defaultdict(list), _acked_index=defaultdict(set), _gap=defaultdict(IntervalTree))


def _ack(consumer: SimpleNamespace, tp: TP, offsets: range) -> None:
    consumer._acked[tp].extend(offsets)
    consumer._acked_index[tp].update(offsets)


def test_commits_are_lowered_to_every_barrier_and_the_held_acks_are_committed_later():
    limits: dict[TP, int] = {WL: 12}
    consumer = _consumer([lambda: limits, lambda: {WL: 15}], {WL: 10, WX: 0})
    _ack(consumer, WL, range(10, 20))
    _ack(consumer, WX, range(0, 5))
    offsets = {tp: FaustConsumer._new_offset(consumer, tp) for tp in (WL, WX)}  # Faust's choice: 20 and 5
    assert offsets == {WL: 20, WX: 5}
    assert _Consumer._within_barriers(consumer, offsets) == {WL: 12, WX: 5}  # the lowest barrier wins
    consumer._committed_offset.update({WL: 12, WX: 5})
    # offsets 12..19 were taken off Faust's books when it chose 20: they are back, for the next commit
    del limits[WL]
    again = FaustConsumer._new_offset(consumer, WL)
    assert again == 20 and _Consumer._within_barriers(consumer, {WL: again}) == {WL: 15}  # the other barrier
    consumer._committed_offset[WL] = 15
    consumer.app.commit_barriers.clear()
    assert _Consumer._within_barriers(consumer, {WL: FaustConsumer._new_offset(consumer, WL)}) == {WL: 20}


def test_a_barrier_at_or_below_the_committed_offset_commits_nothing_and_loses_nothing():
    consumer = _consumer([lambda: {WL: 3}], {WL: 5})
    _ack(consumer, WL, range(5, 9))
    offset = FaustConsumer._new_offset(consumer, WL)
    assert _Consumer._within_barriers(consumer, {WL: offset}) == {}
    consumer.app.commit_barriers.clear()
    assert _Consumer._within_barriers(consumer, {WL: FaustConsumer._new_offset(consumer, WL)}) == {WL: 9}


async def test_one_pass_gives_every_partitions_lowest_barrier_pending_or_in_flight():
    writer, table, _ = _writer({"a": WL, "b": WL, "x": WX})
    async with writer.lock:  # nothing is built meanwhile: all pending
        writer.mark(WL, ["a"], barrier=30)
        writer.mark(WX, ["x"], barrier=9)
        assert writer.commit_limits() == {WL: 30, WX: 9}
    assert await wait_until(lambda: len(table.sent) == 2, 5.0, every=0.001)
    async with writer.lock:
        writer.mark(WL, ["b"], barrier=20)  # pending, below a's in flight
        writer.mark(WX, ["x"], barrier=11)  # pending, above x's in flight
        assert writer.commit_limits() == {WL: 20, WX: 9}
    assert await wait_until(lambda: len(table.sent) == 4, 5.0, every=0.001)
    table.ack_all()
    assert await wait_until(lambda: writer.commit_limits() == {}, 5.0, every=0.001)
    await writer.close()


def test_each_barrier_is_asked_once_per_commit_whatever_the_partitions():
    asked = []
    consumer = _consumer([lambda: asked.append(1) or {WL: 12}], {WL: 10, WX: 0})
    _ack(consumer, WL, range(10, 20))
    _ack(consumer, WX, range(0, 5))
    offsets = {tp: FaustConsumer._new_offset(consumer, tp) for tp in (WL, WX)}
    assert _Consumer._within_barriers(consumer, offsets) == {WL: 12, WX: 5} and asked == [1]


async def test_the_runtime_marks_snapshots_only_once_the_broker_has_the_events_behind_them():
    """DetectorRuntime._send_then_snapshot (batches, stalled partitions, ticks, rules changes): send, await the
    broker's acknowledgements, then mark, with the batch's barriers; _snapshot_now marks the dirty and writes."""
    from streams.agents import DetectorRuntime

    steps: list[Any] = []
    acked = asyncio.Event()

    async def send(events):
        steps.append(("send", list(events)))
        await acked.wait()
        steps.append("acked")

    runtime = SimpleNamespace(alerts=SimpleNamespace(send=send), events_sent=0,
                              _snapshot=lambda sids, first=None: steps.append(("mark", sorted(sids), first)))
    done = asyncio.ensure_future(DetectorRuntime._send_then_snapshot(runtime, ["e1", "e2"], {"b", "a"}, {WL: 4}))
    await asyncio.sleep(0.01)
    assert steps == [("send", ["e1", "e2"])], "a snapshot was marked before the broker had the events"
    acked.set()
    await done
    assert steps[1:] == ["acked", ("mark", ["a", "b"], {WL: 4})] and runtime.events_sent == 2

    writer = SimpleNamespace(write_now=lambda: steps.append("written") or asyncio.sleep(0))
    runtime = SimpleNamespace(engine=SimpleNamespace(dirty=lambda sid: sid != "clean"), writer=writer,
                              _snapshot=lambda sids, first=None: steps.append(("mark", list(sids), first)))
    runtime._snapshot_dirty = lambda sids: DetectorRuntime._snapshot_dirty(runtime, sids)
    steps.clear()
    assert await DetectorRuntime._snapshot_now(runtime, ["a", "clean", "b"]) == ["a", "b"]
    assert steps == [("mark", ["a", "b"], None), "written"]
