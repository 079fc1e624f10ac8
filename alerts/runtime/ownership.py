"""Which ``alerts.grouped`` partitions this dispatcher owns, with their state, timers and lock.

:class:`OwnedPartitions` is the partition consumer's rebalance listener
(alerts/dispatcher.py). For each assigned partition it takes the
partition's :class:`PartitionLock`, opens its state file
(``<state_dir>/dispatcher-p<N>.sqlite``) as a
:class:`~alerts.runtime.partition.PartitionState` and starts its timer loop,
delivery workers and history shipper; on revocation it stops them (the
current step finishes; everything is already persisted), closes the file
and releases the lock.

``state_dir`` is shared by the workers (one host, or a volume with working
POSIX locks): a rebalance hands a partition's file to its next owner, and
the lock keeps a stalled former owner from writing it concurrently. An
error taking a partition is kept in :attr:`OwnedPartitions.failure` and
raised by :meth:`OwnedPartitions.check_health` in the consume loop: the
worker stops, the group gives its partitions to the others.
"""

from __future__ import annotations

import asyncio
import fcntl
import logging
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from aiokafka import ConsumerRebalanceListener

from alerts.runtime.partition import PartitionState
from alerts.runtime.store import state_path
from cityeye.contracts import TOPIC_ALERTS_GROUPED
from cityeye.errors import CityEyeError

__all__ = ["OwnedPartitions", "PartitionLock", "LOCK_TIMEOUT_S", "RELEASE_TIMEOUT_S"]

log = logging.getLogger(__name__)

#: how long a new owner waits for a former owner to let go of a partition's state file
LOCK_TIMEOUT_S = 30.0
#: how long a revoked partition's delivery and timers get to finish their current step
RELEASE_TIMEOUT_S = 5.0


class PartitionLock:
    """An exclusive ``flock`` on ``<state_dir>/dispatcher-p<N>.lock`` (released by the kernel on death)."""

    def __init__(self, path: Path) -> None:
        self.path, self._fd = path, -1

    async def acquire(self, timeout: float) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600)
        deadline = time.monotonic() + timeout
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                self._fd = fd
                return
            except BlockingIOError:
                if time.monotonic() > deadline:
                    os.close(fd)
                    raise CityEyeError(f"{self.path.name} is still locked by another dispatcher after "
                                       f"{timeout:g} s; its partition is not taken over") from None
                await asyncio.sleep(0.1)

    def release(self) -> None:
        if self._fd >= 0:
            fcntl.flock(self._fd, fcntl.LOCK_UN)
            os.close(self._fd)
            self._fd = -1


@dataclass
class _Owned:
    state: PartitionState
    stop: asyncio.Event
    tasks: list[asyncio.Task]
    lock: PartitionLock


class OwnedPartitions(ConsumerRebalanceListener):
    """The partitions this worker owns; ``open_state(path)`` builds a partition's state."""

    def __init__(self, state_dir: Path, open_state: Callable[[Path], PartitionState]) -> None:
        self.state_dir, self.open_state = state_dir, open_state
        self._parts: dict[int, _Owned] = {}
        #: an error taking a partition; stops the worker (its partitions go to the others)
        self.failure: BaseException | None = None

    def __contains__(self, p: int) -> bool:
        return p in self._parts

    def numbers(self) -> list[int]:
        """The owned partition numbers, ascending."""
        return sorted(self._parts)

    def state(self, p: int) -> PartitionState | None:
        """The state of partition ``p`` if owned."""
        owned = self._parts.get(p)
        return owned.state if owned is not None else None

    async def take(self, p: int) -> None:
        if p in self._parts:
            return
        lock = PartitionLock(self.state_dir / f"dispatcher-p{p}.lock")
        await lock.acquire(LOCK_TIMEOUT_S)
        try:
            state = self.open_state(state_path(self.state_dir, p))
        except BaseException:
            lock.release()
            raise
        stop = asyncio.Event()
        self._parts[p] = _Owned(state, stop, state.tasks(stop, name=f"-p{p}"), lock)
        log.info("dispatcher took partition %d of %s: %s", p, TOPIC_ALERTS_GROUPED, state.engine.stats())

    async def release(self, p: int) -> None:
        owned = self._parts.pop(p, None)
        if owned is None:
            return
        owned.stop.set()
        _, pending = await asyncio.wait(owned.tasks, timeout=RELEASE_TIMEOUT_S)
        for task in pending:  # a send still waiting: its row stays in the outbox for the next owner
            task.cancel()
        await asyncio.gather(*owned.tasks, return_exceptions=True)
        owned.state.close()
        owned.lock.release()
        log.info("dispatcher released partition %d of %s", p, TOPIC_ALERTS_GROUPED)

    async def release_all(self) -> None:
        for p in self.numbers():
            await self.release(p)

    def check_health(self) -> None:
        """Raise a failure taking a partition or the error a partition's task stopped with."""
        if self.failure is not None:
            raise self.failure
        for p, owned in self._parts.items():
            for task in owned.tasks:
                if task.done() and not task.cancelled() and task.exception() is not None:
                    log.error("partition %d: %s stopped", p, task.get_name())
                    raise task.exception()  # type: ignore[misc]

    # -- ConsumerRebalanceListener ------------------------------------------------------
    async def on_partitions_revoked(self, revoked: Any) -> None:
        for tp in revoked:
            await self.release(tp.partition)

    async def on_partitions_assigned(self, assigned: Any) -> None:
        for tp in sorted(assigned):
            try:
                await self.take(tp.partition)
            except Exception as exc:  # surfaced by the consume loop: the worker stops, the group moves on
                log.error("could not take partition %d: %s", tp.partition, exc)
                self.failure = self.failure or exc
