"""The dispatcher process: one topology, from one worker to several.

A dispatcher is a worker that owns some partitions of ``alerts.grouped``; a
single dispatcher is simply one that owns every partition. :class:`Dispatcher`
wires one worker together on one asyncio loop:

* the router stage (:class:`~alerts.runtime.sharding.Router`):
  ``alerts.events`` → ``alerts.grouped`` by shard key (``sharding.key``;
  ``none``, the default, puts everything in one partition and one state file);
* the partition consumer (group ``<prefix>-dispatcher``) of ``alerts.grouped``,
  one :func:`cityeye.consume.consume` loop: each batch of an owned partition
  is applied by that partition's :class:`~alerts.runtime.partition.PartitionState`
  (engine, timers, delivery, history over ``dispatcher-p<N>.sqlite``) in one
  store transaction, and its offsets are committed only after it, so nothing
  accepted is lost and a replay is idempotent (event ids); undecodable
  events are dead-lettered (store + ``notifications.deadletter``). Which
  partitions are owned, with their locks: alerts/runtime/ownership.py;
* the HTTP API (:func:`alerts.web.api.create_app`) over a
  :class:`~alerts.runtime.cluster_view.ClusterView` of every partition's state
  file, whose write actions go as records to the partition's owner and are
  applied in order with its events (alerts/runtime/actions.py).

Before starting, the state directory is prepared (alerts/runtime/upgrade.py):
a former single dispatcher's ``dispatcher.sqlite`` is adopted, a start that
would strand state is refused. Everything touching a store runs
synchronously between awaits, so a SQLite connection is never used
concurrently.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from pathlib import Path
from typing import Any, Callable

from aiohttp import web

from alerts.config import AlertingConfig
from alerts.notification import Notifier
from alerts.runtime.actions import ACTION_HEADER
from alerts.runtime.device_health import DeviceHealthView
from alerts.runtime.ownership import OwnedPartitions
from alerts.runtime.partition import RETENTION_S, PartitionState
from alerts.runtime.sharding import UNSHARDED, UNSHARDED_PARTITION, Router, hop_fetch_wait_ms
from alerts.runtime.upgrade import prepare_state_dir
from alerts.web.api import create_app
from alerts.runtime.cluster_view import ClusterView
from cityeye.config import Settings
from cityeye.consume import Batches, Offsets, consume
from cityeye.contracts import (TOPIC_ALERTS, TOPIC_ALERTS_GROUPED, TOPIC_NOTIFICATIONS_DEADLETTER, TOPIC_PARTITIONS,
                               to_json)
from cityeye.device_health import TOPIC_DEVICES_HEALTH
from cityeye.kafka import ensure_topics, make_consumer, make_producer
from cityeye.sensor_registry import registry_for

__all__ = ["Dispatcher", "build_notifiers", "RETENTION_S"]

log = logging.getLogger(__name__)

PARTITION_GROUP = "dispatcher"


def build_notifiers(cfg: AlertingConfig) -> dict[str, Notifier]:
    """One notifier per configured receiver (``alerts.notifiers.build_notifier``).

    Raises :class:`cityeye.errors.ConfigError` naming the receiver at fault (never its secrets).
    """
    from alerts.notifiers import build_notifier

    return {r.name: build_notifier(r.notifier_config()) for r in cfg.receivers}


class Dispatcher:
    """One dispatcher worker: router, partition consumer, owned partitions' state and the API.

    ``await dispatcher.run(stop)`` until ``stop`` is set. Raises
    :class:`cityeye.errors.ConfigError` at construction if the state
    directory holds state this configuration would strand.
    """

    def __init__(self, settings: Settings, alerting: AlertingConfig, notifiers: dict[str, Notifier] | None = None,
                 clock: Callable[[], float] = time.time, api_port: int | None = None) -> None:
        self.settings, self.alerting, self.clock = settings, alerting, clock
        self.state_dir = Path(settings.state_dir)
        self.partition_count = TOPIC_PARTITIONS[TOPIC_ALERTS_GROUPED]
        prepare_state_dir(self.state_dir, alerting.sharding.shard_key, UNSHARDED, UNSHARDED_PARTITION,
                          self.partition_count)
        self.registry = registry_for(settings)
        self.notifiers = notifiers if notifiers is not None else build_notifiers(alerting)
        self.api_port = alerting.api.port if api_port is None else api_port
        self.router = Router(settings.kafka, alerting.sharding.shard_key)
        self.partitions = OwnedPartitions(self.state_dir, self._open_state)
        self.cluster = ClusterView(self.state_dir, lambda: self.partition_count, self._publish_action,
                                   self.partitions.numbers, alerting.sharding.action_timeout, clock)
        self._producer: Any = None
        #: the gateway's device-health records, for GET /api/v1/devices
        self.devices = DeviceHealthView()
        #: set once routing, consuming and (if enabled) the API are up
        self.ready = asyncio.Event()

    def _open_state(self, path: Path) -> PartitionState:
        return PartitionState(path, self.settings, self.alerting, self.notifiers, self.registry,
                              self._publish_deadletter, self.clock)

    # -- Kafka ------------------------------------------------------------------------
    async def _publish_deadletter(self, record: dict[str, Any]) -> None:
        if self._producer is not None:
            key = str(record.get("receiver") or record.get("kind", "")).encode()
            await self._producer.send_and_wait(TOPIC_NOTIFICATIONS_DEADLETTER, to_json(record), key=key)

    async def _safe_publish(self, letter: dict[str, Any]) -> None:
        try:
            await self._publish_deadletter(letter)
        except Exception as exc:
            log.warning("dead letter not published to Kafka (kept in the store): %s", exc)

    async def _publish_action(self, p: int, value: bytes) -> None:
        await self._producer.send_and_wait(TOPIC_ALERTS_GROUPED, value, partition=p, headers=[(ACTION_HEADER, b"1")])

    async def _consume(self, stop: asyncio.Event) -> None:
        consumer = make_consumer(self.settings.kafka, group=PARTITION_GROUP,
                                 fetch_max_wait_ms=hop_fetch_wait_ms(self.settings.kafka))
        await consumer.start()
        consumer.subscribe([TOPIC_ALERTS_GROUPED], listener=self.partitions)

        async def apply(batches: Batches) -> Offsets | None:
            self.partitions.check_health()
            offsets, dead = {}, []
            for tp, records in batches.items():
                state = self.partitions.state(tp.partition)
                if state is None or not records:
                    # not taken yet (aiokafka fetches while the assignment callback runs): read
                    # these again; or revoked meanwhile: its next owner reads them again
                    if records and tp in consumer.assignment():
                        consumer.seek(tp, records[0].offset)
                    continue
                dead += state.apply_records(records)
                state.committed()
                offsets[tp] = records[-1].offset + 1
            for letter in dead:  # at least once: a crash before the commit publishes it again
                await self._safe_publish(letter)
            return offsets

        try:
            await consume(consumer, apply, stop, name="dispatcher")
        finally:
            await consumer.stop()  # revokes (and so releases) every owned partition

    # -- API ------------------------------------------------------------------------------
    async def _start_api(self) -> web.AppRunner | None:
        if not self.alerting.api.enabled:
            return None
        app = create_app(self.cluster, self.alerting.api, clock=self.clock, devices=self.devices)
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        site = web.TCPSite(runner, self.alerting.api.host, self.api_port)
        await site.start()
        self.api_port = runner.addresses[0][1]
        log.info("dispatcher API on http://%s:%d/api/v1/", self.alerting.api.host, self.api_port)
        return runner

    # -- run ------------------------------------------------------------------------------
    async def run(self, stop: asyncio.Event) -> None:
        """Run until ``stop`` is set; then finish the current step and close everything."""
        kafka = self.settings.kafka
        topics = [TOPIC_ALERTS, TOPIC_ALERTS_GROUPED, TOPIC_NOTIFICATIONS_DEADLETTER, TOPIC_DEVICES_HEALTH]
        await ensure_topics(kafka, {t: TOPIC_PARTITIONS[t] for t in topics})
        self._producer = make_producer(kafka, "dispatcher", linger_ms=0)  # the router awaits each batch
        await self._producer.start()
        runner = None
        tasks: list[asyncio.Task] = []
        try:
            self.partition_count = len(await self._producer.partitions_for(TOPIC_ALERTS_GROUPED))
            runner = await self._start_api()
            tasks = [asyncio.create_task(self.router.run(stop, self._producer), name="router"),
                     asyncio.create_task(self._consume(stop), name="consume")]
            if runner is not None:
                tasks.append(asyncio.create_task(self.devices.run(kafka, stop), name="device-health"))
            self.ready.set()
            log.info("dispatcher running: %s", json.dumps({"sharding": self.alerting.sharding.shard_key,
                                                            "partitions": self.partition_count}))
            stopper = asyncio.create_task(stop.wait())
            done, _ = await asyncio.wait([*tasks, stopper], return_when=asyncio.FIRST_COMPLETED)
            for task in done:
                if task is not stopper and task.exception() is not None:
                    raise task.exception()  # type: ignore[misc]
        finally:
            stop.set()
            await asyncio.gather(*tasks, return_exceptions=True)
            if runner is not None:
                await runner.cleanup()
            await self.partitions.release_all()
            self.cluster.close()
            for notifier in self.notifiers.values():
                await notifier.close()
            await self._producer.stop()
