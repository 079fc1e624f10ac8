"""The cases service at run time: the API, the alert consumer, the SLA ticker, the outbox, evaluation.

:class:`CasesService` is built from the cases configuration, the CityEye
settings (Kafka, InfluxDB) and the sensor registry (positions for placing
sensors in grids). :meth:`CasesService.run` serves until ``stop`` is set:

* the HTTP API and console (:mod:`cases.web`);
* ``alerts.events`` read with its own consumer group through
  :func:`cityeye.consume.consume`: each event is applied in one
  transaction and is idempotent by its event id, so offsets are committed
  after the batch is applied (at-least-once in, exactly-once effect);
* the ticker: every ``tick_s`` the due reminders and escalations (the
  deadlines are in the database, so they survive a restart);
* the outbox: notices to duty desks through ``alerts/notifiers``, retried
  with backoff, in the order they were written;
* every ``evaluation_every_s`` the evaluation figures to InfluxDB
  (measurement ``case_evaluation``) when InfluxDB is enabled.

``clock`` is the server clock (``time.time``); tests inject their own.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from typing import Any, Callable

from aiohttp import web
from sqlalchemy import select, update

from alerts.notification import Backoff, Notification, Notifier
from alerts.notifiers import build_notifier
from alerts.sinks.influx import InfluxSink
from cases.auth import Authenticator
from cases.casework import Casework
from cases.config import CasesConfig
from cases.metrics import ALERT_OUTCOMES, NOTICE_OUTCOMES, TIMER_EVENTS
from cases.evaluation import GROUPINGS, evaluate, to_points
from cases.org import Org, load_org
from cases.sla import Calculator
from cases.store import OUTBOX, CaseStore
from cases.web import make_app
from cityeye.config import Settings
from cityeye.consume import Batches, consume, next_offsets
from cityeye.contracts import TOPIC_ALERTS, AlertEvent
from cityeye.errors import DeliveryError, PermanentDeliveryError
from cityeye.kafka import make_consumer
from cityeye.sensor_registry import SensorRegistry

__all__ = ["CasesService", "build_notifiers"]

log = logging.getLogger("cityeye.cases")


def build_notifiers(config: CasesConfig, org: Org, registry: SensorRegistry | None) -> dict[str, Notifier]:
    """The duty desks' notifiers; CAP receivers get the grids' and districts' polygons for ``<area>``."""
    polygons = org.cap_polygons(registry or ())
    out = {}
    for receiver in config.receivers:
        cfg = receiver.notifier_config()
        if cfg.get("type") == "cap":
            cfg["polygons"] = {**polygons, **(cfg.get("polygons") or {})}
        out[receiver.name] = build_notifier(cfg)
    return out


class CasesService:
    """One running cases service (see the module docstring)."""

    def __init__(self, config: CasesConfig, settings: Settings | None = None, registry: SensorRegistry | None = None,
                 clock: Callable[[], float] = time.time, store: CaseStore | None = None) -> None:
        self.config = config
        self.settings = settings
        self.registry = registry
        self.clock = clock
        self.org = load_org(config.org)
        self.store = store or CaseStore.open(config.database_url.get_secret_value())
        self.work = Casework(self.store, self.org, Calculator(config.sla), config.policy)
        self.auth = Authenticator(self.store, self.org, config.session_ttl_s)
        self.notifiers = build_notifiers(config, self.org, registry)
        self.backoff = Backoff(initial_s=1.0, max_s=300.0)
        self.port: int | None = None

    # -- alerts
    def position(self, sensor_id: str) -> tuple[float, float] | None:
        sensor = self.registry.get(sensor_id) if self.registry else None
        return (sensor.lon, sensor.lat) if sensor else None

    def apply_alert(self, raw: bytes) -> str:
        """Apply one ``alerts.events`` record; an unreadable one is logged and skipped (never a crash)."""
        try:
            event = AlertEvent.from_json(raw)
        except (ValueError, TypeError, KeyError) as exc:
            log.warning("cases: unreadable alert event skipped: %s", str(exc)[:200])
            ALERT_OUTCOMES.labels("unreadable").inc()
            return "unreadable"
        outcome, case_id = self.work.ingest_alert(event, self.clock(), self.position(event.sensor_id))
        ALERT_OUTCOMES.labels(outcome).inc()
        if outcome in ("filed", "linked"):
            log.info("cases: alert %s (%s %s) %s case %s", event.alert_id, event.severity, event.state, outcome,
                     case_id)
        return outcome

    async def _consume(self, stop: asyncio.Event) -> None:
        assert self.settings is not None
        consumer = make_consumer(self.settings.kafka, TOPIC_ALERTS, group=self.config.consumer_group,
                                 enable_auto_commit=False, auto_offset_reset="earliest")
        await consumer.start()

        async def handle(batches: Batches) -> dict:
            for records in batches.values():
                for record in records:
                    await asyncio.to_thread(self.apply_alert, record.value)
            return next_offsets(batches)

        try:
            await consume(consumer, handle, stop, timeout_ms=500, name="cases")
        finally:
            await consumer.stop()

    # -- timers and the outbox
    async def _every(self, seconds: float, stop: asyncio.Event, job: Callable[[], Any], name: str) -> None:
        while not stop.is_set():
            try:
                result = job()
                if asyncio.iscoroutine(result):
                    await result
            except Exception:  # noqa: BLE001 - a failed round is logged and the loop goes on
                log.exception("cases: %s failed; trying again in %.0f s", name, seconds)
            try:
                await asyncio.wait_for(stop.wait(), seconds)
            except asyncio.TimeoutError:
                pass

    async def tick(self) -> None:
        for what, case_id in await asyncio.to_thread(self.work.tick, self.clock()):
            TIMER_EVENTS.labels(what).inc()
            log.info("cases: case %s %s", case_id, what)

    async def deliver_outbox(self) -> int:
        """Send the due outbox rows once; returns how many were delivered."""
        now = self.clock()

        def due() -> list[dict[str, Any]]:
            with self.store.engine.connect() as conn:
                query = (select(OUTBOX).where(OUTBOX.c.sent_at.is_(None), OUTBOX.c.next_at <= now)
                         .order_by(OUTBOX.c.id).limit(50))
                return [dict(r) for r in conn.execute(query).mappings()]

        def mark(row_id: int, **values: Any) -> None:
            with self.store.transaction() as conn:
                conn.execute(update(OUTBOX).where(OUTBOX.c.id == row_id).values(**values))

        sent = 0
        for row in await asyncio.to_thread(due):
            notifier = self.notifiers.get(row["receiver"])
            try:
                if notifier is None:
                    raise PermanentDeliveryError(f"no receiver named {row['receiver']!r} in the cases config")
                await notifier.send(Notification.from_dict(json.loads(row["payload"])))
            except PermanentDeliveryError as exc:
                log.error("cases: notice %s to %s dropped: %s", row["id"], row["receiver"], exc)
                await asyncio.to_thread(mark, row["id"], sent_at=now, attempts=row["attempts"] + 1,
                                        last_error=f"permanent: {exc}"[:500])
                NOTICE_OUTCOMES.labels(row["receiver"], "dropped").inc()
            except DeliveryError as exc:
                attempts = row["attempts"] + 1
                await asyncio.to_thread(mark, row["id"], attempts=attempts, last_error=str(exc)[:500],
                                        next_at=now + self.backoff.delay(attempts, exc.retry_after))
                NOTICE_OUTCOMES.labels(row["receiver"], "retried").inc()
            else:
                sent += 1
                await asyncio.to_thread(mark, row["id"], sent_at=now, attempts=row["attempts"] + 1, last_error="")
                NOTICE_OUTCOMES.labels(row["receiver"], "sent").inc()
        return sent

    def evaluation_rows(self) -> list[dict[str, Any]]:
        cases, events = self.store.list_cases(), self.store.all_events()
        return [row for by in GROUPINGS for row in evaluate(cases, events, self.org, by, self.clock())]

    async def ship_evaluation(self, sink: InfluxSink) -> None:
        rows = await asyncio.to_thread(self.evaluation_rows)
        rejected = await sink.write_points(to_points(rows, self.clock()))
        for item in rejected:
            log.warning("cases: InfluxDB refused an evaluation point: %s", item.reason)

    # -- the whole service
    async def run(self, stop: asyncio.Event, *, consume_alerts: bool = True) -> None:
        runner = web.AppRunner(make_app(self.work, self.auth, self.clock), access_log=None)
        await runner.setup()
        site = web.TCPSite(runner, self.config.listen.host, self.config.listen.port)
        await site.start()
        self.port = runner.addresses[0][1]
        log.info("cases: API on http://%s:%s/api/v1/cases, console /cases/", self.config.listen.host, self.port)
        tasks = [asyncio.create_task(self._every(self.config.tick_s, stop, self.tick, "SLA ticker")),
                 asyncio.create_task(self._every(1.0, stop, self.deliver_outbox, "outbox"))]
        sink = None
        influx = self.settings.influx if self.settings else None
        if influx is not None and influx.enabled and self.config.evaluation_every_s > 0:
            sink = InfluxSink(influx)
            tasks.append(asyncio.create_task(self._every(self.config.evaluation_every_s, stop,
                                                         lambda: self.ship_evaluation(sink), "evaluation")))
        if consume_alerts and self.settings is not None:
            tasks.append(asyncio.create_task(self._every(5.0, stop, lambda: self._consume(stop), "alert consumer")))
        try:
            await stop.wait()
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            if sink is not None:
                await sink.close()
            for notifier in self.notifiers.values():
                await notifier.close()
            await runner.cleanup()
            self.store.engine.dispose()
