"""Outbox delivery: retry_after, attempt limit, dead letters, notification-log dedup (fake clock)."""

from __future__ import annotations

from alerts.runtime.delivery import DeliveryManager
from alerts.pipeline.dispatch_engine import INTERNAL_RULE, Engine
from alerts.notification import Notification, Notifier
from alerts.runtime.store import Store
from cityeye.errors import PermanentDeliveryError, RetryableDeliveryError
from tests.alerting_helpers import config, event


class ScriptedNotifier(Notifier):
    """Raises the scripted exceptions in turn, then succeeds; records the ids it was asked to send."""

    def __init__(self, name: str, script: list[Exception]) -> None:
        self.name, self.script, self.sent = name, list(script), []

    async def send(self, notification: Notification) -> None:
        self.sent.append(notification.id)
        if self.script:
            raise self.script.pop(0)


def setup(tmp_path, script, max_attempts=3):
    clock = [0.0]
    cfg = config(["desk", "fallback"], delivery={"max_attempts": max_attempts, "backoff_max": 60},
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


async def test_attempt_limit_dead_letters_and_raises_internal_alert(tmp_path):
    engine, manager, notifier, letters, _ = setup(tmp_path, [RetryableDeliveryError("HTTP 503")] * 5)
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
