"""Per-receiver delivery from the durable outbox.

A notification is in the store's outbox *before* anything is sent (the
engine puts it there in the same transaction as the state change that
caused it). One worker per receiver sends its due rows, up to
``delivery.concurrency`` at once, in *rounds*: each round is one store
transaction that commits the outcomes of the sends finished since the last
round and the attempt counts of the sends it starts
(alerts/runtime/delivery_order.py decides which may start: never two in
flight for the same group or alert, a later one waits for the earlier, so a
receiver sees each group's and each alert's notifications in order; a slow
send holds back only its own group). Outcomes:

* success → the id goes to the notification log and the row leaves the
  outbox; a row whose id is already in the log is dropped unsent, so a
  restart never sends a delivered id again;
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
A notification counts as in flight until its outcome is committed, so at
most ``delivery.concurrency`` per receiver are sent again.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from dataclasses import dataclass
from typing import Awaitable, Callable

from alerts.config import DeliveryConfig
from alerts.pipeline.dispatch_engine import Engine
from alerts.notification import Backoff, Notification, Notifier
from alerts.runtime import metrics
from alerts.runtime.delivery_order import DeliveryOrder
from alerts.runtime.store import OutboxRow
from cityeye.errors import PermanentDeliveryError, RetryableDeliveryError

__all__ = ["DeliveryManager", "DeadLetterPublisher", "SendOutcome"]

log = logging.getLogger(__name__)

DeadLetterPublisher = Callable[[dict], Awaitable[None]]
#: longest a single send may take before it counts as a retryable failure
SEND_TIMEOUT_S = 60.0
#: due rows read per round beyond the free slots (rows held back by an earlier one of their group are skipped)
DUE_LOOKAHEAD = 50


@dataclass
class SendOutcome:
    """One finished send, waiting to be committed with its round.

    ``failure`` is ``None`` (delivered), ``permanent`` or ``retryable``;
    ``reason`` says why it failed and ``retry_after`` is the receiver's
    ``Retry-After``, if any.
    """

    note: Notification
    attempt: int
    failure: str | None = None
    reason: str = ""
    retry_after: float | None = None


class DeliveryManager:
    """Runs one delivery worker per configured receiver, each with up to ``delivery.concurrency`` sends in flight."""

    def __init__(self, engine: Engine, notifiers: dict[str, Notifier], cfg: DeliveryConfig,
                 deadletter: DeadLetterPublisher | None = None, clock: Callable[[], float] = time.time,
                 on_commit: Callable[[], None] | None = None, wall: Callable[[], float] | None = None) -> None:
        self.engine, self.store, self.notifiers = engine, engine.store, notifiers
        self.backoff = Backoff(initial_s=cfg.backoff_initial, max_s=cfg.backoff_max,
                               max_attempts=cfg.max_attempts, jitter=cfg.jitter)
        #: the backoff of redeliveries once max_attempts ran out (None: dead-letter them instead)
        self.redelivery = Backoff(initial_s=cfg.backoff_max, max_s=max(cfg.backoff_max, cfg.redelivery_max),
                                  max_attempts=2**31, jitter=cfg.jitter) if cfg.redeliver else None
        self.concurrency = cfg.concurrency
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
            with self.store.transaction():
                for row in self.store.outbox_due(receiver, float("inf"), limit=10_000):
                    self.store.add_deadletter("notification", f"receiver {receiver!r} is not configured",
                                              json.loads(row.body), now)
                    self.store.outbox_remove(row.id)

    async def _worker(self, name: str, notifier: Notifier, stop: asyncio.Event) -> None:
        """Rounds until ``stop``: commit finished outcomes and start what may go, then wait for a change.

        Once ``stop`` is set nothing new starts; the sends in flight finish
        and are committed (the owner cancels them after its grace time:
        their rows, attempt counted, stay in the outbox).
        """
        wake, order = self._wake[name], DeliveryOrder(self.concurrency)
        sending: set[asyncio.Task] = set()
        try:
            while sending or not stop.is_set():
                wake.clear()
                done = {task for task in sending if task.done()}
                sending -= done
                started = await self._round(name, order, [task.result() for task in done], stop.is_set())
                sending.update(asyncio.create_task(self._send(note, attempt, notifier), name=f"send-{name}")
                               for note, attempt in started)
                if done or started:
                    continue  # a round committed: fill what slots are left before waiting
                await self._idle(name, wake, stop, sending, full=not order.free)
        finally:
            for task in sending:
                task.cancel()

    async def _idle(self, name: str, wake: asyncio.Event, stop: asyncio.Event, sending: set[asyncio.Task],
                    full: bool) -> None:
        """Wait for a send to finish, a wake-up, ``stop`` or (when a slot is free) the next retry's time."""
        if any(task.done() for task in sending):
            return
        timeout: float | None = None
        if not full and not stop.is_set():
            now = self.wall()
            nxt = self.store.outbox_next_time(name, after=now)
            timeout = 1.0 if nxt is None else min(1.0, max(0.0, nxt - now))
        waiters = {asyncio.ensure_future(wake.wait()), *sending}
        if not stop.is_set():
            waiters.add(asyncio.ensure_future(stop.wait()))
        try:
            await asyncio.wait(waiters, timeout=timeout, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for waiter in waiters - sending:
                waiter.cancel()

    async def _round(self, name: str, order: DeliveryOrder, finished: list[SendOutcome],
                     stopping: bool) -> list[tuple[Notification, int]]:
        """One transaction: the outcomes of ``finished``, then the attempts of what may go now (nothing once
        ``stopping``); returns the sends to start (notification, attempt)."""
        def admitted() -> list[tuple[OutboxRow, dict]]:
            if stopping or not order.free:
                return []
            return order.admit(self.store.outbox_due(name, self.wall(), limit=order.concurrency + DUE_LOOKAHEAD))

        going = [] if finished else admitted()
        if not finished and not going:
            return []  # nothing to commit, nothing to start: no transaction
        with self.store.transaction():
            letters = [letter for outcome in finished
                       if (letter := self._record(outcome, self._status(outcome))) is not None]
            for outcome in finished:
                order.settle(outcome.note.id)
            started, duplicates = self._begin(going or admitted())
        for nid in duplicates:
            order.settle(nid)
        await self._after_commit(letters)
        return started

    async def deliver_one(self, row: OutboxRow, notifier: Notifier) -> str:
        """One attempt at ``row`` on its own; returns ``delivered``, ``retrying``, ``redelivering``, ``dead``
        or ``duplicate``."""
        with self.store.transaction():
            started, _ = self._begin([(row, json.loads(row.body))])
        if not started:
            return "duplicate"
        outcome = await self._send(*started[0], notifier)
        status = self._status(outcome)
        with self.store.transaction():
            letter = self._record(outcome, status)
        await self._after_commit([letter] if letter is not None else [])
        return status

    async def _after_commit(self, letters: list[dict]) -> None:
        """Wake whom the committed round concerns, then publish its dead letters."""
        self._committed()
        for letter in letters:
            await self._publish(letter)

    def _begin(self, rows: list[tuple[OutboxRow, dict]]) -> tuple[list[tuple[Notification, int]], list[str]]:
        """In the round's transaction: count an attempt of each row, or drop it if its id was delivered."""
        started, duplicates = [], []
        for row, body in rows:
            if self.store.delivered(row.id):
                self.store.outbox_remove(row.id)
                duplicates.append(row.id)
                continue
            # a row queued on event time ahead of the wall stays due if this attempt is cut short
            self.store.outbox_attempted(row.id, row.attempts + 1, min(row.next_attempt, self.wall()), row.last_error)
            started.append((Notification.from_dict(body), row.attempts + 1))
        return started, duplicates

    async def _send(self, note: Notification, attempt: int, notifier: Notifier) -> SendOutcome:
        """Send ``note`` once (no store access: the outcome is committed with the next round)."""
        labels = (note.receiver, metrics.integration_of(notifier))
        metrics.NOTIFICATIONS.labels(*labels).inc()
        try:
            with metrics.NOTIFICATION_LATENCY.labels(*labels).time():
                await asyncio.wait_for(notifier.send(note), timeout=SEND_TIMEOUT_S)
        except PermanentDeliveryError as exc:
            metrics.NOTIFICATIONS_FAILED.labels(*labels, "permanent").inc()
            return SendOutcome(note, attempt, "permanent", f"permanent failure: {exc}")
        except RetryableDeliveryError as exc:
            metrics.NOTIFICATIONS_FAILED.labels(*labels, "retryable").inc()
            return SendOutcome(note, attempt, "retryable", str(exc), exc.retry_after)
        except asyncio.TimeoutError:
            metrics.NOTIFICATIONS_FAILED.labels(*labels, "timeout").inc()
            return SendOutcome(note, attempt, "retryable", f"no answer within {SEND_TIMEOUT_S:g} s")
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # a notifier bug must not kill delivery: retry, then dead-letter
            metrics.NOTIFICATIONS_FAILED.labels(*labels, "error").inc()
            log.exception("notifier %s raised unexpectedly", note.receiver)
            return SendOutcome(note, attempt, "retryable", f"{type(exc).__name__}: {exc}")
        metrics.DELIVERY_LATENCY.labels(*labels).observe(max(0.0, self.clock() - note.created_at))
        return SendOutcome(note, attempt)

    def _status(self, outcome: SendOutcome) -> str:
        """What :meth:`_record` made of ``outcome``."""
        if outcome.failure is None:
            return "delivered"
        if outcome.failure == "permanent" or (outcome.attempt >= self.backoff.max_attempts and self.redelivery is None):
            return "dead"
        return "retrying" if outcome.attempt < self.backoff.max_attempts else "redelivering"

    def _record(self, outcome: SendOutcome, status: str) -> dict | None:
        """In the round's transaction: write ``outcome``, whose :meth:`_status` is ``status``; returns a dead
        letter to publish after the commit."""
        note, attempt, now = outcome.note, outcome.attempt, self.clock()
        if status == "delivered":
            if self.store.dead_notification(note.id) is not None:
                self.store.dead_notification_state(note.id, "delivered")
            self.store.mark_delivered(note.id, note.receiver, attempt, now)
            self.engine.record_delivery(note, attempt, "delivered", f"attempt {attempt}", now)
            self.engine.receiver_recovered(note.receiver, now)
            return None
        if status == "retrying":
            delay = self.backoff.delay(attempt, outcome.retry_after)
            log.info("notification %s to %s: attempt %d failed (%s); retrying in %.2f s",
                     note.id, note.receiver, attempt, outcome.reason, delay)
            self.store.outbox_attempted(note.id, attempt, self.wall() + delay, outcome.reason)
            self.engine.record_delivery(note, attempt, "retrying", outcome.reason, now)
            return None
        if status == "redelivering":
            return self._redeliver_later(outcome, now)
        reason = outcome.reason if outcome.failure == "permanent" else \
            f"gave up after {attempt} attempt(s): {outcome.reason}"
        return self._dead(note, attempt, reason, now)

    def _redeliver_later(self, outcome: SendOutcome, now: float) -> dict | None:
        """Retries ran out: dead-letter it once (the store, Kafka, the internal alert), keep it queued for
        redelivery on the slower backoff."""
        assert self.redelivery is not None
        note, attempt, reason = outcome.note, outcome.attempt, outcome.reason
        first = attempt == self.backoff.max_attempts  # this round of attempts just ran out
        delay = self.redelivery.delay(attempt - self.backoff.max_attempts + 1, outcome.retry_after)
        text = f"gave up after {attempt} attempt(s): {reason}" if first else f"redelivery failed: {reason}"
        self.store.outbox_attempted(note.id, attempt, self.wall() + delay, reason)
        self.store.dead_notification_put(note.id, note.receiver, "redelivering", attempt, text, note.to_dict(), now)
        if not first:
            log.info("notification %s to %s: %s; next redelivery in %.0f s", note.id, note.receiver, text, delay)
            return None
        record = self._letter(note, attempt, text, now, redelivery=True)
        self.store.add_deadletter("notification", text, record, now)
        self.engine.record_delivery(note, attempt, "redelivering", text, now)
        self.engine.receiver_failing(note.receiver, reason, now)
        metrics.NOTIFICATIONS_DEAD_LETTERED.labels(note.receiver, metrics.integration_of(
            self.notifiers.get(note.receiver))).inc()
        log.warning("notification %s to %s dead-lettered, redelivered until the receiver takes it: %s",
                    note.id, note.receiver, text)
        return record

    def _dead(self, note: Notification, attempt: int, reason: str, now: float) -> dict:
        log.warning("notification %s to %s dead-lettered: %s", note.id, note.receiver, reason)
        metrics.NOTIFICATIONS_DEAD_LETTERED.labels(note.receiver, metrics.integration_of(
            self.notifiers.get(note.receiver))).inc()
        record = self._letter(note, attempt, reason, now, redelivery=False)
        self.store.add_deadletter("notification", reason, record, now)
        self.store.dead_notification_put(note.id, note.receiver, "dead", attempt, reason, note.to_dict(), now)
        self.store.outbox_remove(note.id)
        self.engine.record_delivery(note, attempt, "dead", reason, now)
        self.engine.receiver_failing(note.receiver, reason, now)
        return record

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
