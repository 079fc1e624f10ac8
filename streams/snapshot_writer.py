"""Sensor snapshots written by a background task, and the commit barrier they hold.

The detector agent only marks sensors whose state must be saved
(:meth:`SnapshotWriter.mark`); a background task builds their snapshots
under the runtime's lock (so a snapshot never splits a record and never
includes a reading whose alert events are not acknowledged yet, see
streams/agents.py), keeps them in the table at once and sends them to the
changelog outside the lock, a chunk at a time, while the agent goes on with
the next batch. A sensor marked again before its snapshot is built is built
once, with its newest state.

Each mark carries a *barrier* offset of the sensor's readings partition: the
first offset of the batch that made the snapshot necessary. Until the
snapshot is acknowledged by the broker, the worker's group must not commit
beyond that offset (:meth:`SnapshotWriter.commit_limits`, one of
:attr:`streams.transport.CityEyeFaustApp.commit_barriers`): after a crash,
the readings from the barrier on are delivered again and rebuild what the
lost snapshot would have held, exactly as when snapshots were written inline
before the batch's offsets could be committed.
"""

from __future__ import annotations

import asyncio
import logging
from collections import Counter
from functools import partial
from itertools import chain, islice
from typing import Any, Callable, Iterable

from faust.types import TP

from streams import metrics
from streams.tables import SnapshotTable

__all__ = ["SnapshotWriter", "BuildSnapshot", "CHUNK"]

log = logging.getLogger(__name__)

#: builds a sensor's snapshot and says its readings partition (None: the sensor is gone)
BuildSnapshot = Callable[[str], "tuple[TP, dict[str, Any]] | None"]
#: snapshots built per turn of the runtime's lock (a batch of readings waits at most this many)
CHUNK = 32


class SnapshotWriter:
    """Builds and writes marked sensors' snapshots in the background; tells how far offsets may be committed.

    Parameters
    ----------
    table : SnapshotTable
        Where snapshots are kept and sent (its changelog).
    build : BuildSnapshot
        Called with the runtime's lock held: the sensor's readings partition
        and snapshot (marking it clean), or ``None`` if it is not held any more.
    lock : asyncio.Lock
        The runtime's lock, serialising batches, ticks and lifecycle hooks.
    chunk : int
        Snapshots built per turn of the lock.
    """

    def __init__(self, table: SnapshotTable, build: BuildSnapshot, lock: asyncio.Lock, chunk: int = CHUNK) -> None:
        self.table = table
        self.build = build
        self.lock = lock
        self.chunk = chunk
        #: sensor -> (readings partition, barrier offset), marked and not built yet
        self.pending: dict[str, tuple[TP, int]] = {}
        #: (readings partition, barrier offset) -> snapshots built and sent, not acknowledged yet
        self.in_flight: Counter[tuple[TP, int]] = Counter()
        self.written = 0
        self._wake = asyncio.Event()
        #: set while nothing is in flight
        self._settled = asyncio.Event()
        self._settled.set()
        self._task: asyncio.Task[None] | None = None
        self._failure: BaseException | None = None

    # -- the runtime's side -------------------------------------------------------

    def mark(self, tp: TP, sensor_ids: Iterable[str], barrier: int) -> None:
        """Have the sensors of readings partition ``tp`` snapshotted; commit no further than ``barrier`` until then.

        Raises ``RuntimeError`` once the background task failed (a snapshot
        could not be written): the worker must stop, not go on uncommitted.
        """
        self._raise_failure()
        pending, marked = self.pending, False
        for sid in sensor_ids:
            held = pending.get(sid)
            pending[sid] = (tp, barrier if held is None or held[0] != tp else min(held[1], barrier))
            marked = True
        if marked:
            if self._task is None or self._task.done():
                self._task = asyncio.get_running_loop().create_task(self._run(), name="cityeye-snapshot-writer")
            self._wake.set()

    def commit_limits(self) -> dict[TP, int]:
        """The highest offset the group may commit now of each partition a snapshot holds back (its lowest
        barrier, pending or in flight; a partition not named is not held), in one pass."""
        limits: dict[TP, int] = {}
        for tp, barrier in chain(self.pending.values(), self.in_flight):
            held = limits.get(tp)
            if held is None or barrier < held:
                limits[tp] = barrier
        return limits

    async def write_now(self) -> None:
        """Build, send and await every pending snapshot and every one in flight.

        The caller holds the runtime's lock (revocation, shutdown: the
        partitions' snapshots must be in the broker before they go).
        """
        while self.pending:
            await self._write(self._build_chunk(len(self.pending)))
        await self._settled.wait()
        self._raise_failure()

    async def close(self) -> None:
        """Stop the background task (after :meth:`write_now` for a clean stop)."""
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)

    # -- the background task ------------------------------------------------------

    async def _run(self) -> None:
        try:
            while True:
                await self._wake.wait()
                self._wake.clear()
                while self.pending:
                    async with self.lock:
                        built = self._build_chunk(self.chunk)
                    await self._write(built)
                    await asyncio.sleep(0)  # sends rarely wait: let the agent and the consumer in
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # a snapshot that cannot be built or sent must stop the worker, loudly
            log.exception("writing snapshots failed: offsets stay uncommitted from here on")
            self._failure = exc
            self._settled.set()

    def _build_chunk(self, n: int) -> list[tuple[TP, int, str, dict[str, Any]]]:
        built = []
        for sid in list(islice(self.pending, n)):
            tp, barrier = self.pending.pop(sid)
            made = self.build(sid)
            if made is None:
                continue
            built.append((tp, barrier, sid, self.table.keep(made[0], sid, made[1])))
            self.in_flight[tp, barrier] += 1
            self._settled.clear()
        return built

    async def _write(self, built: list[tuple[TP, int, str, dict[str, Any]]]) -> None:
        """Hand the snapshots to the producer (waits only while its buffer is full); acks come back by callback."""
        for tp, barrier, sid, value in built:
            sent = await self.table.send(sid, value)
            sent.add_done_callback(partial(self._acknowledged, tp, barrier))

    def _acknowledged(self, tp: TP, barrier: int, sent: asyncio.Future) -> None:
        exc = sent.exception() if not sent.cancelled() else asyncio.CancelledError()
        if exc is not None:  # the barrier stays: never committed past a snapshot the broker may not have
            if self._failure is None:
                log.error("a snapshot could not be written (%r): offsets stay uncommitted from here on", exc)
                self._failure = exc
            self._settled.set()
            return
        key = (tp, barrier)
        self.in_flight[key] -= 1
        if not self.in_flight[key]:
            del self.in_flight[key]
        self.written += 1
        metrics.SNAPSHOT_WRITES.inc()
        if not self.in_flight:
            self._settled.set()

    def _raise_failure(self) -> None:
        if self._failure is not None:
            raise RuntimeError("the snapshot writer failed: snapshots are not being written") from self._failure
