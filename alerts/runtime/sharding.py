"""Several dispatcher workers, state partitioned by shard key (``sharding.enabled``).

Every worker runs two stages on one asyncio loop:

* :class:`Router`, stateless: consumes ``alerts.events`` (consumer group
  ``<prefix>-dispatcher-router``) and produces each event unchanged to
  ``alerts.grouped`` keyed by its shard key (``sharding.key``, default the
  district; an undecodable event keeps its own key and is dead-lettered by
  the partition that receives it), with header ``cityeye-source`` naming
  its original place. The source offsets are committed only after Kafka
  acknowledged every produced record (acks=all).
* :class:`ShardedDispatcher`, stateful: consumes ``alerts.grouped`` (group
  ``<prefix>-dispatcher``). For each assigned partition it takes the
  partition's lock file, opens its own state file
  (``<state_dir>/dispatcher-p<N>.sqlite``) with its engine, timers, delivery
  workers and history shipper (:class:`~alerts.runtime.partition.PartitionState`);
  on revocation it stops them (the current step finishes; everything is
  already persisted), closes the file and releases the lock. Offsets are
  committed only after the batch's transaction committed.

``state_dir`` must be shared by the workers (one host, or a volume with
working POSIX locks): a rebalance hands a partition's file to its next
owner, and the lock keeps a stalled former owner from writing it
concurrently. Groups, escalations and inhibitions stay within one
partition because the configuration is validated to group and inhibit by
the shard key (alerts/config.py). API reads and actions across partitions:
alerts/web/cluster_view.py and alerts/runtime/actions.py.
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

from aiokafka import ConsumerRebalanceListener, TopicPartition
from aiokafka.errors import KafkaError

from alerts.runtime.actions import ACTION_HEADER, SOURCE_HEADER
from alerts.web.cluster_view import ClusterView
from alerts.config import AlertingConfig
from alerts.runtime.handover import ResumeAfterOtherGroup
from alerts.notification import Notifier
from alerts.runtime.partition import PartitionState
from alerts.runtime.dispatcher import DispatcherBase
from alerts.runtime.store import pending_work, state_path
from cityeye.config import KafkaSettings, Settings
from cityeye.contracts import (
    TOPIC_ALERTS,
    TOPIC_ALERTS_GROUPED,
    TOPIC_PARTITIONS,
    decode_alert_event,
)
from cityeye.errors import CityEyeError, ConfigError
from cityeye.kafka import make_consumer

__all__ = ["ShardedDispatcher", "Router", "PartitionLock", "shard_key", "LOCK_TIMEOUT_S", "RELEASE_TIMEOUT_S"]

log = logging.getLogger(__name__)

#: how long a new owner waits for a former owner to let go of a partition's state file
LOCK_TIMEOUT_S = 30.0
#: how long a revoked partition's delivery and timers get to finish their current step
RELEASE_TIMEOUT_S = 5.0


def shard_key(raw: bytes | None, key: str) -> bytes | None:
    """The shard key of an ``alerts.events`` value; ``None`` if it is not a valid event."""
    try:
        ev = decode_alert_event(raw)
    except ValueError:
        return None
    value = {"district": ev.district, "kind": ev.kind, "sensor": ev.sensor_id}[key]
    return value.encode()


class Router:
    """``alerts.events`` → ``alerts.grouped`` keyed by shard key (at-least-once, order kept per key)."""

    def __init__(self, kafka: KafkaSettings, key: str) -> None:
        self.kafka, self.key = kafka, key

    async def run(self, stop: asyncio.Event, producer: Any) -> None:
        consumer = make_consumer(self.kafka, group="dispatcher-router")
        await consumer.start()
        # after a switch from one dispatcher: resume where it stopped (alerts/runtime/handover.py)
        handover = ResumeAfterOtherGroup(consumer, self.kafka, "dispatcher")
        consumer.subscribe([TOPIC_ALERTS], listener=handover)
        try:
            while not stop.is_set():
                batches = handover.admit(await consumer.getmany(timeout_ms=200, max_records=1000))
                if not batches:
                    continue
                try:
                    await self._forward(batches, producer)
                except KafkaError as exc:  # nothing committed: read the batch again and re-send
                    log.warning("re-keying into %s failed (the batch is read again): %s", TOPIC_ALERTS_GROUPED, exc)
                    assigned = consumer.assignment()
                    for tp, records in batches.items():
                        if tp in assigned:  # a revoked one is re-read by its next owner anyway
                            consumer.seek(tp, records[0].offset)
                    await asyncio.sleep(0.5)
                    continue
                try:
                    await consumer.commit({tp: records[-1].offset + 1 for tp, records in batches.items()})
                except KafkaError as exc:  # re-read and re-sent; the dispatchers apply each event once
                    log.warning("router offset commit failed (events will be re-keyed again): %s", exc)
        finally:
            await consumer.stop()

    async def _forward(self, batches: dict[TopicPartition, list[Any]], producer: Any) -> None:
        acks = []
        for records in batches.values():
            for rec in records:
                key = shard_key(rec.value, self.key)
                source = f"{rec.topic}/{rec.partition}/{rec.offset}".encode()
                acks.append(await producer.send(TOPIC_ALERTS_GROUPED, rec.value,
                                                key=key if key is not None else rec.key,
                                                headers=[(SOURCE_HEADER, source)]))
        await asyncio.gather(*acks)


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


class _Rebalance(ConsumerRebalanceListener):
    def __init__(self, owner: "ShardedDispatcher") -> None:
        self.owner = owner

    async def on_partitions_revoked(self, revoked: Any) -> None:
        for tp in revoked:
            await self.owner.release(tp.partition)

    async def on_partitions_assigned(self, assigned: Any) -> None:
        for tp in sorted(assigned):
            try:
                await self.owner.take(tp.partition)
            except Exception as exc:  # surfaced by the consume loop: the worker stops, the group moves on
                log.error("could not take partition %d: %s", tp.partition, exc)
                self.owner.failure = self.owner.failure or exc


class ShardedDispatcher(DispatcherBase):
    """One of several workers; owns the state of its assigned ``alerts.grouped`` partitions."""

    def __init__(self, settings: Settings, alerting: AlertingConfig, notifiers: dict[str, Notifier] | None = None,
                 clock: Callable[[], float] = time.time, api_port: int | None = None) -> None:
        super().__init__(settings, alerting, notifiers, clock, api_port)
        self.state_dir = Path(settings.state_dir)
        _refuse_single_state(self.state_dir)
        self.parts: dict[int, _Owned] = {}
        self.partition_count = TOPIC_PARTITIONS[TOPIC_ALERTS_GROUPED]
        self.router = Router(settings.kafka, alerting.sharding.key)
        self.cluster = ClusterView(self.state_dir, lambda: self.partition_count, self._publish_action,
                                   lambda: sorted(self.parts), alerting.sharding.action_timeout, clock)
        #: an error taking a partition; stops the worker (its partitions go to the others)
        self.failure: BaseException | None = None

    # -- partitions ---------------------------------------------------------------
    async def take(self, p: int) -> None:
        if p in self.parts:
            return
        lock = PartitionLock(self.state_dir / f"dispatcher-p{p}.lock")
        await lock.acquire(LOCK_TIMEOUT_S)
        try:
            state = self._partition_state(state_path(self.state_dir, p), grouped=True)
        except BaseException:
            lock.release()
            raise
        stop = asyncio.Event()
        self.parts[p] = _Owned(state, stop, state.tasks(stop, name=f"-p{p}"), lock)
        log.info("dispatcher took partition %d of %s: %s", p, TOPIC_ALERTS_GROUPED, state.engine.stats())

    async def release(self, p: int) -> None:
        owned = self.parts.pop(p, None)
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

    def _check_health(self) -> None:
        if self.failure is not None:
            raise self.failure
        for p, owned in self.parts.items():
            for task in owned.tasks:
                if task.done() and not task.cancelled() and task.exception() is not None:
                    log.error("partition %d: %s stopped", p, task.get_name())
                    raise task.exception()  # type: ignore[misc]

    # -- Kafka ----------------------------------------------------------------------
    async def _publish_action(self, p: int, value: bytes) -> None:
        await self._producer.send_and_wait(TOPIC_ALERTS_GROUPED, value, partition=p, headers=[(ACTION_HEADER, b"1")])

    async def _consume(self, stop: asyncio.Event) -> None:
        consumer = make_consumer(self.settings.kafka, group="dispatcher")
        await consumer.start()
        consumer.subscribe([TOPIC_ALERTS_GROUPED], listener=_Rebalance(self))
        try:
            while not stop.is_set():
                self._check_health()
                batches = await consumer.getmany(timeout_ms=200, max_records=1000)
                offsets, dead = {}, []
                for tp, records in batches.items():
                    owned = self.parts.get(tp.partition)
                    if owned is None or not records:
                        # not taken yet (aiokafka fetches while the assignment callback runs): read
                        # these again; or revoked meanwhile: its next owner reads them again
                        if records and tp in consumer.assignment():
                            consumer.seek(tp, records[0].offset)
                        continue
                    dead += owned.state.apply_records(records)
                    owned.state.committed()
                    offsets[tp] = records[-1].offset + 1
                if not offsets:
                    continue
                try:
                    await consumer.commit(offsets)
                except KafkaError as exc:  # e.g. a rebalance: the events come again and are deduplicated
                    log.warning("offset commit failed (events will be re-read, applied once): %s", exc)
                for letter in dead:
                    await self._safe_publish(letter)
        finally:
            await consumer.stop()  # revokes (and so releases) every owned partition

    # -- DispatcherBase ---------------------------------------------------------------
    def _topics(self) -> list[str]:
        return [TOPIC_ALERTS, TOPIC_ALERTS_GROUPED]

    async def _start(self, stop: asyncio.Event) -> list[asyncio.Task]:
        self.partition_count = len(await self._producer.partitions_for(TOPIC_ALERTS_GROUPED))
        return [asyncio.create_task(self.router.run(stop, self._producer), name="router"),
                asyncio.create_task(self._consume(stop), name="consume")]

    def _api_engine(self) -> tuple[Any, Callable[[], None]]:
        return self.cluster, lambda: None

    async def _close_state(self) -> None:
        for p in list(self.parts):
            await self.release(p)
        self.cluster.close()

    def _describe(self) -> dict[str, Any]:
        return {"sharding": self.alerting.sharding.key, "partitions": self.partition_count}


def _refuse_single_state(state_dir: Path) -> None:
    """Switching from one dispatcher to several must not strand its state (active alerts, unsent notifications)."""
    path = state_path(state_dir)
    pending = pending_work(path)
    if pending:
        raise ConfigError(f"{path} holds a single dispatcher's state ({pending} active alert(s) or unsent "
                          "notification(s)); run with sharding disabled until it has drained, then enable sharding")
