"""The dispatcher process: Kafka in, state, timers, delivery, history and the API.

:class:`Dispatcher` wires the pipeline together on one asyncio loop:

* a Kafka consumer (group ``<prefix>-dispatcher``) of ``alerts.events``;
  each fetched batch is applied to the :class:`~alerts.engine.Engine` in
  one store transaction and the offsets are committed only after it, so
  nothing accepted is lost and a replay is idempotent (event ids);
  undecodable events are dead-lettered (store + ``notifications.deadletter``);
* a timer loop (``timings.tick``) for resolves, silence windows, group
  flushes, escalations and reminders;
* :class:`~alerts.delivery.DeliveryManager` (one worker per receiver);
* :class:`~alerts.history.HistoryShipper` to InfluxDB (if enabled);
* the HTTP API (:func:`alerts.api.create_app`).

Everything touching the store runs synchronously between awaits, so the
single SQLite connection is never used concurrently.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from typing import Any, Callable

from aiohttp import web
from aiokafka.errors import KafkaError

from alerts.api import create_app
from alerts.config import AlertingConfig
from alerts.delivery import DeliveryManager
from alerts.engine import Engine, decode_event
from alerts.history import HistoryShipper
from alerts.notification import Notifier
from alerts.store import Store, state_path
from cityeye.config import Settings
from cityeye.contracts import TOPIC_ALERTS, TOPIC_NOTIFICATIONS_DEADLETTER, TOPIC_PARTITIONS, to_json
from cityeye.kafka import ensure_topics, make_consumer, make_producer
from cityeye.registry import registry_for

__all__ = ["Dispatcher", "build_notifiers"]

log = logging.getLogger(__name__)

#: resolved alerts and the notification log are kept this long in the store (history is in InfluxDB)
RETENTION_S = 30 * 86400


def build_notifiers(cfg: AlertingConfig) -> dict[str, Notifier]:
    """One notifier per configured receiver (``alerts.notifiers.build_notifier``).

    Raises :class:`cityeye.errors.ConfigError` naming the receiver at fault (never its secrets).
    """
    from alerts.notifiers import build_notifier

    return {r.name: build_notifier(r.notifier_config()) for r in cfg.receivers}


class Dispatcher:
    """One dispatcher; ``await Dispatcher(...).run(stop)`` until ``stop`` is set."""

    def __init__(self, settings: Settings, alerting: AlertingConfig, notifiers: dict[str, Notifier] | None = None,
                 clock: Callable[[], float] = time.time, api_port: int | None = None) -> None:
        self.settings, self.alerting, self.clock = settings, alerting, clock
        self.store = Store(state_path(settings.state_dir))
        registry = registry_for(settings)
        self.engine = Engine(alerting, self.store, registry)
        self.notifiers = notifiers if notifiers is not None else build_notifiers(alerting)
        self.api_port = alerting.api.port if api_port is None else api_port
        self.history: HistoryShipper | None = None
        if settings.influx.enabled:
            from alerts.sinks.influx import InfluxSink

            self.history = HistoryShipper(self.store, InfluxSink(settings.influx), settings.influx.batch_size)
        else:
            self.store.history_enabled = False  # the timelines in the store remain
        self.delivery = DeliveryManager(self.engine, self.notifiers, alerting.delivery, self._publish_deadletter,
                                        clock, on_commit=self._committed)
        self._producer = None
        #: set once consuming, ticking and (if enabled) the API are up
        self.ready = asyncio.Event()

    # -- wiring ---------------------------------------------------------------
    def _committed(self) -> None:
        """After a store commit: wake the delivery workers and the history shipper."""
        woken, self.engine.woken = self.engine.woken, set()
        self.delivery.wake(woken)
        if self.history is not None:
            self.history.wake.set()

    async def _publish_deadletter(self, record: dict[str, Any]) -> None:
        if self._producer is not None:
            key = str(record.get("receiver") or record.get("kind", "")).encode()
            await self._producer.send_and_wait(TOPIC_NOTIFICATIONS_DEADLETTER, to_json(record), key=key)

    # -- loops ----------------------------------------------------------------
    def apply_records(self, records: list[Any]) -> list[dict[str, Any]]:
        """Apply a batch of Kafka records in one transaction; returns dead letters to publish.

        If applying fails unexpectedly, the batch is rolled back and
        re-applied one record per transaction so that only the record at
        fault is dead-lettered.
        """
        now = self.clock()
        dead: list[dict[str, Any]] = []
        try:
            with self.store.transaction():
                for rec in records:
                    self._apply_record(rec, now, dead)
                self.engine.tick(now)  # flush what became due at once, not a tick later
            return dead
        except Exception:
            log.exception("batch of %d alert events failed; re-applying one by one", len(records))
            self.engine.reload()
        dead = []
        for rec in records:
            try:
                with self.store.transaction():
                    self._apply_record(rec, now, dead)
            except Exception as exc:
                self.engine.reload()
                letter = self._event_letter(rec, f"internal error applying the event: {type(exc).__name__}: {exc}", now)
                with self.store.transaction():
                    self.store.add_deadletter("alert_event", letter["reason"], letter, now)
                dead.append(letter)
        return dead

    @staticmethod
    def _event_letter(rec: Any, reason: str, now: float) -> dict[str, Any]:
        raw = rec.value if isinstance(rec.value, bytes) else b""
        return {"kind": "alert_event", "reason": reason, "at": now, "topic": rec.topic, "partition": rec.partition,
                "offset": rec.offset, "payload": raw[:16384].decode("utf-8", "replace")}

    def _apply_record(self, rec: Any, now: float, dead: list[dict[str, Any]]) -> None:
        try:
            ev = decode_event(rec.value if rec.value is not None else b"")
        except ValueError as exc:
            letter = self._event_letter(rec, str(exc), now)
            log.warning("alert event at %s[%s]@%s dead-lettered: %s", rec.topic, rec.partition, rec.offset, exc)
            self.store.add_deadletter("alert_event", str(exc), letter, now)
            dead.append(letter)
            return
        self.engine.apply_event(ev, now)

    async def _consume(self, stop: asyncio.Event) -> None:
        consumer = make_consumer(self.settings.kafka, TOPIC_ALERTS, group="dispatcher")
        await consumer.start()
        try:
            while not stop.is_set():
                batches = await consumer.getmany(timeout_ms=200, max_records=1000)
                records = [r for part in batches.values() for r in part]
                if not records:
                    continue
                dead = self.apply_records(records)
                self._committed()
                try:
                    await consumer.commit()
                except KafkaError as exc:  # e.g. a rebalance: the events come again and are deduplicated
                    log.warning("offset commit failed (events will be re-read, applied once): %s", exc)
                for letter in dead:
                    await self._safe_publish(letter)
        finally:
            await consumer.stop()

    async def _safe_publish(self, letter: dict[str, Any]) -> None:
        try:
            await self._publish_deadletter(letter)
        except Exception as exc:
            log.warning("dead letter not published to Kafka (kept in the store): %s", exc)

    async def _tick(self, stop: asyncio.Event) -> None:
        next_prune = 0.0
        while not stop.is_set():
            now = self.clock()
            with self.store.transaction():
                self.engine.tick(now)
                if now >= next_prune:
                    self.store.prune(now - RETENTION_S)
                    next_prune = now + 3600
            self._committed()
            try:
                await asyncio.wait_for(stop.wait(), timeout=self.alerting.timings.tick)
            except asyncio.TimeoutError:
                pass

    async def _start_api(self) -> web.AppRunner | None:
        if not self.alerting.api.enabled:
            return None
        app = create_app(self.engine, self.alerting.api, on_commit=self._committed, clock=self.clock)
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        site = web.TCPSite(runner, self.alerting.api.host, self.api_port)
        await site.start()
        self.api_port = runner.addresses[0][1]
        log.info("dispatcher API on http://%s:%d/api/v1/", self.alerting.api.host, self.api_port)
        return runner

    async def run(self, stop: asyncio.Event) -> None:
        """Run until ``stop`` is set; then finish the current step and close everything."""
        kafka = self.settings.kafka
        await ensure_topics(kafka, {t: TOPIC_PARTITIONS[t] for t in (TOPIC_ALERTS, TOPIC_NOTIFICATIONS_DEADLETTER)})
        self._producer = make_producer(kafka, "dispatcher")
        await self._producer.start()
        runner = await self._start_api()
        tasks = [asyncio.create_task(self._consume(stop), name="consume"),
                 asyncio.create_task(self._tick(stop), name="tick"),
                 asyncio.create_task(self.delivery.run(stop), name="delivery")]
        if self.history is not None:
            tasks.append(asyncio.create_task(self.history.run(stop), name="history"))
        self.delivery.wake()
        self.ready.set()
        log.info("dispatcher running: %s", json.dumps(self.engine.stats()))
        try:
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
            for notifier in self.notifiers.values():
                await notifier.close()
            await self._producer.stop()
            self.store.close()
