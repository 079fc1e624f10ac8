"""Per-receiver delivery from the durable outbox.

A notification is in the store's outbox *before* anything is sent (the
engine puts it there in the same transaction as the state change that
caused it). One worker per receiver sends its due rows in order:

* success → the id goes to the notification log and the row leaves the
  outbox (one transaction); a row whose id is already in the log is
  dropped unsent, so a restart never sends a delivered id again;
* :class:`~cityeye.errors.RetryableDeliveryError` (or a timeout, or an
  unexpected exception in the notifier) → the attempt is counted and the
  row waits :meth:`alerts.notification.Backoff.delay` (``retry_after``
  wins) before the next try; after ``max_attempts`` it is dead-lettered
  *and stays in the outbox* (``delivery.redeliver``, the default): it is
  redelivered with a backoff growing from ``backoff_max`` to
  ``redelivery_max`` (5 min) until the receiver takes it, without an
  operator; its state is kept in ``dead_notifications`` (``redelivering``,
  then ``delivered``);
* :class:`~cityeye.errors.PermanentDeliveryError` → dead-lettered at once
  (``dead``); an operator replays it through the API once the receiver is
  fixed (``POST /api/v1/notifications/dead/{id}/replay``, alerts/runtime/redelivery.py).

The times recorded (timelines, the notification log, dead letters) come
from ``clock``, the partition's clock (the wall's, or the events' own time
with ``timings.clock: event``); retries are scheduled on ``wall``, because
a receiver's outage is real time. A notification never attempted is due at
once, whatever time it was queued at.

Dead-lettering writes the reason to the store, publishes it to Kafka
``notifications.deadletter`` and raises the internal alert
``receiver_failing`` about the receiver (resolved by its next success).

The attempt count is persisted *before* each send, and a row is only
removed after the outcome is committed, so ``kill -9`` at any point means
the same notification (same id, hence same ``Idempotency-Key``) is sent
again after the restart: never skipped, and deduplicated by the receiver.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from typing import Awaitable, Callable

from alerts.config import DeliveryConfig
from alerts.pipeline.dispatch_engine import Engine
from alerts.notification import Backoff, Notification, Notifier
from alerts.runtime import metrics
from alerts.runtime.store import OutboxRow
from cityeye.errors import PermanentDeliveryError, RetryableDeliveryError

__all__ = ["DeliveryManager", "DeadLetterPublisher"]

log = logging.getLogger(__name__)

DeadLetterPublisher = Callable[[dict], Awaitable[None]]
#: longest a single send may take before it counts as a retryable failure
SEND_TIMEOUT_S = 60.0


class DeliveryManager:
    """Runs one delivery worker per configured receiver."""

    def __init__(self, engine: Engine, notifiers: dict[str, Notifier], cfg: DeliveryConfig,
                 deadletter: DeadLetterPublisher | None = None, clock: Callable[[], float] = time.time,
                 on_commit: Callable[[], None] | None = None, wall: Callable[[], float] | None = None) -> None:
        self.engine, self.store, self.notifiers = engine, engine.store, notifiers
        self.backoff = Backoff(initial_s=cfg.backoff_initial, max_s=cfg.backoff_max,
                               max_attempts=cfg.max_attempts, jitter=cfg.jitter)
        #: the backoff of redeliveries once max_attempts ran out (None: dead-letter them instead)
        self.redelivery = Backoff(initial_s=cfg.backoff_max, max_s=max(cfg.backoff_max, cfg.redelivery_max),
                                  max_attempts=2**31, jitter=cfg.jitter) if cfg.redeliver else None
        self.deadletter, self.clock = deadletter, clock
        #: what retries are scheduled on (the same as ``clock`` unless the engine runs on event time)
        self.wall = wall or clock
        #: called after each committed outcome (the service wakes other workers / the history shipper)
        self.on_commit = on_commit or (lambda: None)
        self._wake = {name: asyncio.Event() for name in notifiers}

    def wake(self, receivers: set[str] | None = None) -> None:
        for name in receivers if receivers is not None else self._wake:
            if name in self._wake:
                self._wake[name].set()

    async def run(self, stop: asyncio.Event) -> None:
        self._drop_unknown_receivers()
        workers = [asyncio.create_task(self._worker(name, n, stop), name=f"deliver-{name}")
                   for name, n in self.notifiers.items()]
        try:
            await asyncio.gather(*workers)
        finally:
            for w in workers:
                w.cancel()

    def _drop_unknown_receivers(self) -> None:
        """Outbox rows for receivers no longer configured: dead-letter them (never silently drop)."""
        now = self.clock()
        for receiver in self.store.outbox_receivers():
            if receiver in self.notifiers:
                continue
            for row in self.store.outbox_due(receiver, float("inf"), limit=10_000):
                with self.store.transaction():
                    self.store.add_deadletter("notification", f"receiver {receiver!r} is not configured",
                                              json.loads(row.body), now)
                    self.store.outbox_remove(row.id)

    async def _worker(self, name: str, notifier: Notifier, stop: asyncio.Event) -> None:
        wake = self._wake[name]
        while not stop.is_set():
            wake.clear()
            rows = self.store.outbox_due(name, self.wall())
            for row in rows:
                if stop.is_set():
                    return
                await self.deliver_one(row, notifier)
            if rows:
                continue
            nxt = self.store.outbox_next_time(name)
            timeout = 1.0 if nxt is None else min(1.0, max(0.0, nxt - self.wall()))
            waiter = asyncio.ensure_future(wake.wait())
            stopper = asyncio.ensure_future(stop.wait())
            try:
                await asyncio.wait({waiter, stopper}, timeout=timeout, return_when=asyncio.FIRST_COMPLETED)
            finally:
                waiter.cancel()
                stopper.cancel()

    async def deliver_one(self, row: OutboxRow, notifier: Notifier) -> str:
        """One attempt at ``row``; returns ``delivered``, ``retrying``, ``dead`` or ``duplicate``."""
        note = Notification.from_dict(json.loads(row.body))
        if self.store.delivered(row.id):
            with self.store.transaction():
                self.store.outbox_remove(row.id)
            return "duplicate"
        attempt = row.attempts + 1
        with self.store.transaction():
            # a row queued on event time ahead of the wall stays due if this attempt is cut short
            self.store.outbox_attempted(row.id, attempt, min(row.next_attempt, self.wall()), row.last_error)
        labels = (note.receiver, metrics.integration_of(notifier))
        metrics.NOTIFICATIONS.labels(*labels).inc()
        try:
            with metrics.NOTIFICATION_LATENCY.labels(*labels).time():
                await asyncio.wait_for(notifier.send(note), timeout=SEND_TIMEOUT_S)
        except PermanentDeliveryError as exc:
            metrics.NOTIFICATIONS_FAILED.labels(*labels, "permanent").inc()
            return await self._dead(note, attempt, f"permanent failure: {exc}")
        except RetryableDeliveryError as exc:
            metrics.NOTIFICATIONS_FAILED.labels(*labels, "retryable").inc()
            return await self._retry(note, attempt, str(exc), exc.retry_after)
        except asyncio.TimeoutError:
            metrics.NOTIFICATIONS_FAILED.labels(*labels, "timeout").inc()
            return await self._retry(note, attempt, f"no answer within {SEND_TIMEOUT_S:g} s", None)
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # a notifier bug must not kill delivery: retry, then dead-letter
            metrics.NOTIFICATIONS_FAILED.labels(*labels, "error").inc()
            log.exception("notifier %s raised unexpectedly", note.receiver)
            return await self._retry(note, attempt, f"{type(exc).__name__}: {exc}", None)
        now = self.clock()
        metrics.DELIVERY_LATENCY.labels(*labels).observe(max(0.0, now - note.created_at))
        with self.store.transaction():
            if self.store.dead_notification(note.id) is not None:
                self.store.dead_notification_state(note.id, "delivered")
            self.store.mark_delivered(note.id, note.receiver, attempt, now)
            self.engine.record_delivery(note, attempt, "delivered", f"attempt {attempt}", now)
            self.engine.receiver_recovered(note.receiver, now)
        self._committed()
        return "delivered"

    async def _retry(self, note: Notification, attempt: int, reason: str, retry_after: float | None) -> str:
        if attempt >= self.backoff.max_attempts:
            if self.redelivery is None:
                return await self._dead(note, attempt, f"gave up after {attempt} attempt(s): {reason}")
            return await self._redeliver_later(note, attempt, reason, retry_after)
        now = self.clock()
        delay = self.backoff.delay(attempt, retry_after)
        log.info("notification %s to %s: attempt %d failed (%s); retrying in %.2f s",
                 note.id, note.receiver, attempt, reason, delay)
        with self.store.transaction():
            self.store.outbox_attempted(note.id, attempt, self.wall() + delay, reason)
            self.engine.record_delivery(note, attempt, "retrying", reason, now)
        self._committed()
        return "retrying"

    async def _redeliver_later(self, note: Notification, attempt: int, reason: str,
                               retry_after: float | None) -> str:
        """Retries ran out: dead-letter it once (the store, Kafka, the internal alert), keep it queued for
        redelivery on the slower backoff."""
        assert self.redelivery is not None
        now = self.clock()
        first = attempt == self.backoff.max_attempts  # this round of attempts just ran out
        delay = self.redelivery.delay(attempt - self.backoff.max_attempts + 1, retry_after)
        text = f"gave up after {attempt} attempt(s): {reason}" if first else f"redelivery failed: {reason}"
        record = self._letter(note, attempt, text, now, redelivery=True)
        with self.store.transaction():
            self.store.outbox_attempted(note.id, attempt, self.wall() + delay, reason)
            self.store.dead_notification_put(note.id, note.receiver, "redelivering", attempt, text, note.to_dict(), now)
            if first:
                self.store.add_deadletter("notification", text, record, now)
                self.engine.record_delivery(note, attempt, "redelivering", text, now)
                self.engine.receiver_failing(note.receiver, reason, now)
        self._committed()
        if first:
            metrics.NOTIFICATIONS_DEAD_LETTERED.labels(note.receiver, metrics.integration_of(
                self.notifiers.get(note.receiver))).inc()
            log.warning("notification %s to %s dead-lettered, redelivered until the receiver takes it: %s",
                        note.id, note.receiver, text)
            await self._publish(record)
        else:
            log.info("notification %s to %s: %s; next redelivery in %.0f s", note.id, note.receiver, text, delay)
        return "redelivering"

    async def _dead(self, note: Notification, attempt: int, reason: str) -> str:
        now = self.clock()
        log.warning("notification %s to %s dead-lettered: %s", note.id, note.receiver, reason)
        metrics.NOTIFICATIONS_DEAD_LETTERED.labels(note.receiver, metrics.integration_of(
            self.notifiers.get(note.receiver))).inc()
        record = self._letter(note, attempt, reason, now, redelivery=False)
        with self.store.transaction():
            self.store.add_deadletter("notification", reason, record, now)
            self.store.dead_notification_put(note.id, note.receiver, "dead", attempt, reason, note.to_dict(), now)
            self.store.outbox_remove(note.id)
            self.engine.record_delivery(note, attempt, "dead", reason, now)
            self.engine.receiver_failing(note.receiver, reason, now)
        self._committed()
        await self._publish(record)
        return "dead"

    @staticmethod
    def _letter(note: Notification, attempt: int, reason: str, now: float, redelivery: bool) -> dict:
        return {"kind": "notification", "reason": reason, "receiver": note.receiver, "attempts": attempt,
                "at": now, "redelivery": redelivery, "notification": note.to_dict()}

    async def _publish(self, record: dict) -> None:
        if self.deadletter is not None:
            try:
                await self.deadletter(record)
            except Exception as exc:  # the store keeps the record; Kafka is a copy
                log.warning("dead letter of %s not published to Kafka (kept in the store): %s",
                            record["notification"]["id"], exc)

    def _committed(self) -> None:
        woken, self.engine.woken = self.engine.woken, set()
        self.wake(woken)
        self.on_commit()
