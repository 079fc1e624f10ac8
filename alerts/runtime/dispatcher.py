"""The dispatcher process: Kafka in, state, timers, delivery, history and the API.

:class:`Dispatcher` (one worker, the default) wires the pipeline together on
one asyncio loop:

* a Kafka consumer (group ``<prefix>-dispatcher``) of ``alerts.events``;
  each fetched batch is applied to the :class:`~alerts.pipeline.dispatch_engine.Engine` in
  one store transaction and the offsets are committed only after it, so
  nothing accepted is lost and a replay is idempotent (event ids);
  undecodable events are dead-lettered (store + ``notifications.deadletter``);
* one :class:`~alerts.runtime.partition.PartitionState` over ``dispatcher.sqlite``:
  a timer loop (``timings.tick``) for resolves, silence windows, group
  flushes, escalations and reminders, :class:`~alerts.runtime.delivery.DeliveryManager`
  (one worker per receiver) and :class:`~alerts.runtime.history.HistoryShipper` to
  InfluxDB (if enabled);
* the HTTP API (:func:`alerts.web.api.create_app`).

:class:`DispatcherBase` holds what every kind of dispatcher shares (the
producer, notifiers, dead-letter publishing, the API and the run/shutdown
skeleton); :class:`alerts.runtime.sharding.ShardedDispatcher` is the several-workers
variant. :func:`make_dispatcher` picks one from ``sharding.enabled``.

Everything touching a store runs synchronously between awaits, so a
SQLite connection is never used concurrently.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from typing import Any, Callable

from aiohttp import web
from aiokafka.errors import KafkaError

from alerts.web.api import create_app
from alerts.config import AlertingConfig
from alerts.runtime.handover import ResumeAfterOtherGroup
from alerts.notification import Notifier
from alerts.runtime.partition import RETENTION_S, PartitionState
from alerts.runtime.store import pending_work, state_path
from cityeye.config import Settings
from cityeye.contracts import (TOPIC_ALERTS, TOPIC_ALERTS_GROUPED, TOPIC_NOTIFICATIONS_DEADLETTER, TOPIC_PARTITIONS,
                               to_json)
from cityeye.errors import ConfigError
from cityeye.kafka import ensure_topics, make_consumer, make_producer
from cityeye.sensor_registry import registry_for

__all__ = ["DispatcherBase", "Dispatcher", "build_notifiers", "make_dispatcher", "RETENTION_S"]

log = logging.getLogger(__name__)


def build_notifiers(cfg: AlertingConfig) -> dict[str, Notifier]:
    """One notifier per configured receiver (``alerts.notifiers.build_notifier``).

    Raises :class:`cityeye.errors.ConfigError` naming the receiver at fault (never its secrets).
    """
    from alerts.notifiers import build_notifier

    return {r.name: build_notifier(r.notifier_config()) for r in cfg.receivers}


class DispatcherBase:
    """What every dispatcher shares; subclasses supply :meth:`_topics`, :meth:`_start`, :meth:`_api_engine`
    and :meth:`_close_state`. ``await dispatcher.run(stop)`` until ``stop`` is set."""

    def __init__(self, settings: Settings, alerting: AlertingConfig, notifiers: dict[str, Notifier] | None = None,
                 clock: Callable[[], float] = time.time, api_port: int | None = None) -> None:
        self.settings, self.alerting, self.clock = settings, alerting, clock
        self.registry = registry_for(settings)
        self.notifiers = notifiers if notifiers is not None else build_notifiers(alerting)
        self.api_port = alerting.api.port if api_port is None else api_port
        self._producer = None
        #: set once consuming, ticking and (if enabled) the API are up
        self.ready = asyncio.Event()

    def _partition_state(self, path: Any, grouped: bool = False) -> PartitionState:
        return PartitionState(path, self.settings, self.alerting, self.notifiers, self.registry,
                              self._publish_deadletter, self.clock, grouped=grouped)

    async def _publish_deadletter(self, record: dict[str, Any]) -> None:
        if self._producer is not None:
            key = str(record.get("receiver") or record.get("kind", "")).encode()
            await self._producer.send_and_wait(TOPIC_NOTIFICATIONS_DEADLETTER, to_json(record), key=key)

    async def _safe_publish(self, letter: dict[str, Any]) -> None:
        try:
            await self._publish_deadletter(letter)
        except Exception as exc:
            log.warning("dead letter not published to Kafka (kept in the store): %s", exc)

    async def _start_api(self) -> web.AppRunner | None:
        if not self.alerting.api.enabled:
            return None
        engine, on_commit = self._api_engine()
        app = create_app(engine, self.alerting.api, on_commit=on_commit, clock=self.clock)
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        site = web.TCPSite(runner, self.alerting.api.host, self.api_port)
        await site.start()
        self.api_port = runner.addresses[0][1]
        log.info("dispatcher API on http://%s:%d/api/v1/", self.alerting.api.host, self.api_port)
        return runner

    # -- for subclasses ---------------------------------------------------------
    def _topics(self) -> list[str]:
        raise NotImplementedError

    async def _start(self, stop: asyncio.Event) -> list[asyncio.Task]:
        raise NotImplementedError

    def _api_engine(self) -> tuple[Any, Callable[[], None]]:
        raise NotImplementedError

    async def _close_state(self) -> None:
        raise NotImplementedError

    def _describe(self) -> dict[str, Any]:
        return {}

    async def run(self, stop: asyncio.Event) -> None:
        """Run until ``stop`` is set; then finish the current step and close everything."""
        kafka = self.settings.kafka
        await ensure_topics(kafka, {t: TOPIC_PARTITIONS[t] for t in [*self._topics(), TOPIC_NOTIFICATIONS_DEADLETTER]})
        self._producer = make_producer(kafka, "dispatcher")
        await self._producer.start()
        runner = None
        tasks: list[asyncio.Task] = []
        try:
            runner = await self._start_api()
            tasks = await self._start(stop)
            self.ready.set()
            log.info("dispatcher running: %s", json.dumps(self._describe()))
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
            await self._close_state()
            for notifier in self.notifiers.values():
                await notifier.close()
            await self._producer.stop()


class Dispatcher(DispatcherBase):
    """One dispatcher owning one state file (``dispatcher.sqlite``), consuming ``alerts.events``."""

    def __init__(self, settings: Settings, alerting: AlertingConfig, notifiers: dict[str, Notifier] | None = None,
                 clock: Callable[[], float] = time.time, api_port: int | None = None) -> None:
        super().__init__(settings, alerting, notifiers, clock, api_port)
        _refuse_partition_state(settings.state_dir)
        self.state = self._partition_state(state_path(settings.state_dir))
        self.store, self.engine = self.state.store, self.state.engine
        self.delivery, self.history = self.state.delivery, self.state.history

    def apply_records(self, records: list[Any]) -> list[dict[str, Any]]:
        """Apply a batch of Kafka records in one transaction; returns dead letters to publish."""
        return self.state.apply_records(records)

    async def _consume(self, stop: asyncio.Event) -> None:
        consumer = make_consumer(self.settings.kafka, group="dispatcher")
        await consumer.start()
        # after several workers ran: resume where their router stopped (alerts/runtime/handover.py)
        handover = ResumeAfterOtherGroup(consumer, self.settings.kafka, "dispatcher-router")
        consumer.subscribe([TOPIC_ALERTS], listener=handover)
        try:
            while not stop.is_set():
                batches = handover.admit(await consumer.getmany(timeout_ms=200, max_records=1000))
                records = [r for part in batches.values() for r in part]
                if not records:
                    continue
                dead = self.apply_records(records)
                self.state.committed()
                try:
                    await consumer.commit()
                except KafkaError as exc:  # e.g. a rebalance: the events come again and are deduplicated
                    log.warning("offset commit failed (events will be re-read, applied once): %s", exc)
                for letter in dead:
                    await self._safe_publish(letter)
        finally:
            await consumer.stop()

    def _topics(self) -> list[str]:
        return [TOPIC_ALERTS]

    async def _start(self, stop: asyncio.Event) -> list[asyncio.Task]:
        return [asyncio.create_task(self._consume(stop), name="consume"), *self.state.tasks(stop)]

    def _api_engine(self) -> tuple[Any, Callable[[], None]]:
        return self.engine, self.state.committed

    async def _close_state(self) -> None:
        self.state.close()

    def _describe(self) -> dict[str, Any]:
        return self.engine.stats()


def _refuse_partition_state(state_dir: str) -> None:
    """Going back from several workers to one must not strand the partitions' state."""
    for p, path in enumerate(state_path(state_dir, p) for p in range(TOPIC_PARTITIONS[TOPIC_ALERTS_GROUPED])):
        pending = pending_work(path)
        if pending:
            raise ConfigError(f"{path} holds partition {p}'s state of several dispatcher workers ({pending} active "
                              "alert(s) or unsent notification(s)); keep sharding enabled until it has drained")


def make_dispatcher(settings: Settings, alerting: AlertingConfig, notifiers: dict[str, Notifier] | None = None,
                    clock: Callable[[], float] = time.time, api_port: int | None = None) -> DispatcherBase:
    """A :class:`Dispatcher`, or with ``sharding.enabled`` an :class:`alerts.runtime.sharding.ShardedDispatcher`."""
    if alerting.sharding.enabled:
        from alerts.runtime.sharding import ShardedDispatcher

        return ShardedDispatcher(settings, alerting, notifiers, clock, api_port)
    return Dispatcher(settings, alerting, notifiers, clock, api_port)
