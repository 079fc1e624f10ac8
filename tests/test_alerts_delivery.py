"""Outbox delivery: retry_after, attempt limit, dead letters, notification-log dedup (fake clock)."""

from __future__ import annotations

import asyncio
import time

import pytest

from alerts.runtime.delivery import DeliveryManager
from alerts.pipeline.dispatch_engine import INTERNAL_RULE, Engine
from alerts.notification import Notification, Notifier
from alerts.runtime.store import Store
from cityeye.errors import PermanentDeliveryError, RetryableDeliveryError
from alerts.notifiers import build_notifier
from launch.servers import free_port
from tests.alerting_helpers import Receiver, config, event
from tests.kafka_helpers import wait_until


class ScriptedNotifier(Notifier):
    """Raises the scripted exceptions in turn, then succeeds; records the ids it was asked to send."""

    def __init__(self, name: str, script: list[Exception]) -> None:
        self.name, self.script, self.sent = name, list(script), []

    async def send(self, notification: Notification) -> None:
        self.sent.append(notification.id)
        if self.script:
            raise self.script.pop(0)


def setup(tmp_path, script, max_attempts=3, **delivery):
    clock = [0.0]
    cfg = config(["desk", "fallback"], delivery={"max_attempts": max_attempts, "backoff_max": 60, **delivery},
                 route={"routes": [{"match": {"kind": "system"}, "receiver": "fallback"}]})
    engine = Engine(cfg, Store(tmp_path / "s.sqlite"))
    with engine.store.transaction():
        engine.apply_event(event("wl-01", severity="red"), 0.0)
        engine.tick(0.0)
    notifier = ScriptedNotifier("desk", script)
    letters: list[dict] = []

    async def publish(record: dict) -> None:
        letters.append(record)

    manager = DeliveryManager(engine, {"desk": notifier, "fallback": ScriptedNotifier("fallback", [])},
                              cfg.delivery, publish, clock=lambda: clock[0])
    return engine, manager, notifier, letters, clock


def due(engine: Engine, receiver: str = "desk"):
    return engine.store.outbox_due(receiver, float("inf"))


async def test_retry_after_is_honoured_and_same_id_is_resent(tmp_path):
    engine, manager, notifier, _, clock = setup(tmp_path, [RetryableDeliveryError("HTTP 429", status=429, retry_after=7)])
    [row] = due(engine)
    assert await manager.deliver_one(row, notifier) == "retrying"
    [row2] = due(engine)
    assert (row2.id, row2.attempts, row2.next_attempt) == (row.id, 1, 7.0)
    assert engine.store.outbox_due("desk", 6.9) == []
    clock[0] = 7.0
    assert await manager.deliver_one(row2, notifier) == "delivered"
    assert notifier.sent == [row.id, row.id] and due(engine) == [] and engine.store.delivered(row.id)


async def test_one_attempt_judges_its_outcome_once(tmp_path, monkeypatch):
    """deliver_one records and returns the same status, computed once (not once to record, again to return)."""
    engine, manager, notifier, _, _ = setup(tmp_path, [RetryableDeliveryError("HTTP 503")])
    judged = []
    status_of = DeliveryManager._status
    monkeypatch.setattr(DeliveryManager, "_status", lambda self, o: judged.append(status_of(self, o)) or judged[-1])
    [row] = due(engine)
    assert await manager.deliver_one(row, notifier) == "retrying" and judged == ["retrying"]
    assert [r.attempts for r in due(engine)] == [1]


async def test_attempt_limit_dead_letters_and_raises_internal_alert(tmp_path):
    engine, manager, notifier, letters, _ = setup(tmp_path, [RetryableDeliveryError("HTTP 503")] * 5, redeliver=False)
    for expected in ("retrying", "retrying", "dead"):
        [row] = due(engine)
        assert await manager.deliver_one(row, notifier) == expected
    assert due(engine) == []
    assert letters[0]["reason"] == "gave up after 3 attempt(s): HTTP 503" and letters[0]["attempts"] == 3
    assert engine.store.deadletters("notification")[0]["reason"] == letters[0]["reason"]
    internal = engine.active[f"receiver:desk|{INTERNAL_RULE}"]
    assert internal.kind == "system" and "HTTP 503" in internal.message
    with engine.store.transaction():
        engine.tick(1.0)
    assert [r.receiver for r in due(engine, "fallback")] == ["fallback"]


async def test_permanent_failure_is_dead_at_once(tmp_path):
    engine, manager, notifier, letters, _ = setup(tmp_path, [PermanentDeliveryError("HTTP 404", status=404)])
    [row] = due(engine)
    assert await manager.deliver_one(row, notifier) == "dead"
    assert letters[0]["reason"].startswith("permanent failure: HTTP 404") and letters[0]["attempts"] == 1


async def test_already_delivered_id_is_never_sent_again(tmp_path):
    engine, manager, notifier, _, _ = setup(tmp_path, [])
    [row] = due(engine)
    with engine.store.transaction():
        engine.store.mark_delivered(row.id, "desk", 1, 0.0)
        # as if a crash left the row behind after the delivery was logged
        engine.store.db.execute("INSERT INTO outbox(id, receiver, created, attempts, next_attempt, body) "
                                "VALUES (?,?,?,?,?,?)", (row.id, "desk", 0.0, 1, 0.0, row.body))
    [again] = due(engine)
    assert await manager.deliver_one(again, notifier) == "duplicate"
    assert notifier.sent == [] and due(engine) == []
    with engine.store.transaction():
        assert engine.store.outbox_add(row.id, "desk", {}, 1.0) is False


async def test_success_after_failure_resolves_the_internal_alert(tmp_path):
    engine, manager, notifier, _, clock = setup(tmp_path, [PermanentDeliveryError("HTTP 410")])
    [row] = due(engine)
    await manager.deliver_one(row, notifier)
    assert f"receiver:desk|{INTERNAL_RULE}" in engine.active
    with engine.store.transaction():
        engine.apply_event(event("wl-02", severity="red"), 1.0)
        engine.tick(1.0)
    [row2] = due(engine)
    assert await manager.deliver_one(row2, notifier) == "delivered"
    assert f"receiver:desk|{INTERNAL_RULE}" not in engine.active


async def test_retries_run_out_then_redelivered_without_an_operator(tmp_path):
    """Dead-lettered once, kept queued, redelivered every 60, 120, ... s (capped at 5 min) until delivered."""
    engine, manager, notifier, letters, clock = setup(tmp_path, [RetryableDeliveryError("HTTP 503")] * 6)
    for expected in ("retrying", "retrying", "redelivering"):
        [row] = due(engine)
        clock[0] = row.next_attempt
        assert await manager.deliver_one(row, notifier) == expected
    assert len(letters) == 1 and letters[0]["redelivery"] is True
    assert letters[0]["reason"] == "gave up after 3 attempt(s): HTTP 503"
    assert f"receiver:desk|{INTERNAL_RULE}" in engine.active
    [dead] = engine.store.dead_notifications()
    assert (dead["state"], dead["receiver"], dead["attempts"]) == ("redelivering", "desk", 3)
    waits = []
    for _ in range(3):  # the receiver is still down
        [row] = due(engine)
        waits.append(row.next_attempt - clock[0])
        assert engine.store.outbox_due("desk", row.next_attempt - 0.1) == []
        clock[0] = row.next_attempt
        assert await manager.deliver_one(row, notifier) == "redelivering"
    [row] = due(engine)
    waits.append(row.next_attempt - clock[0])
    assert waits == pytest.approx([60, 120, 240, 300])  # from backoff_max, doubling, capped at redelivery_max
    assert len(letters) == 1  # one dead letter, not one per redelivery
    clock[0] = row.next_attempt
    assert await manager.deliver_one(row, notifier) == "delivered"  # the receiver is back
    assert set(notifier.sent) == {row.id} and len(notifier.sent) == 7
    assert engine.store.delivered(row.id) and due(engine) == []
    assert engine.store.dead_notification(row.id)["state"] == "delivered"
    assert f"receiver:desk|{INTERNAL_RULE}" not in engine.active or \
        engine.active[f"receiver:desk|{INTERNAL_RULE}"].resolve_at is not None


async def test_redelivery_survives_a_restart(tmp_path):
    engine, manager, notifier, _, clock = setup(tmp_path, [RetryableDeliveryError("HTTP 503")] * 3)
    for _ in range(3):
        [row] = due(engine)
        clock[0] = row.next_attempt
        await manager.deliver_one(row, notifier)
    engine.store.close()
    reopened = Engine(engine.cfg, Store(tmp_path / "s.sqlite"))
    [row] = reopened.store.outbox_due("desk", float("inf"))
    assert row.attempts == 3 and reopened.store.dead_notification(row.id)["state"] == "redelivering"


async def test_receiver_down_past_retries_gets_it_when_back(tmp_path):
    """Real HTTP: the receiver's port is closed through every retry; it comes up and gets the notification."""
    port = free_port()
    cfg = config([{"name": "desk", "type": "webhook", "url": f"http://127.0.0.1:{port}/hook", "timeout_s": 1}],
                 delivery={"max_attempts": 2, "backoff_initial": 0.05, "backoff_max": 0.2, "redelivery_max": 0.4})
    engine = Engine(cfg, Store(tmp_path / "s.sqlite"))
    with engine.store.transaction():
        engine.apply_event(event("wl-01", severity="red"), time.time())
        engine.tick(time.time())
    [queued] = due(engine)
    notifier = build_notifier(cfg.receivers[0].model_dump())
    manager = DeliveryManager(engine, {"desk": notifier}, cfg.delivery)
    stop = asyncio.Event()
    task = asyncio.create_task(manager.run(stop))
    try:
        assert await wait_until(lambda: engine.store.dead_notifications("redelivering")), "retries did not run out"
        await asyncio.sleep(1.0)  # redeliveries keep failing while it is down
        assert engine.store.dead_notification(queued.id)["attempts"] >= 3
        async with Receiver(port=port) as rx:
            assert await wait_until(lambda: engine.store.delivered(queued.id), timeout=10), "not redelivered"
        assert rx.delivered_keys == [queued.id]
        assert engine.store.dead_notification(queued.id)["state"] == "delivered"
    finally:
        stop.set()
        await task
        await notifier.close()
