"""Concurrent delivery per receiver: order per group and per alert, the concurrency cap, a slow send or
receiver holding back only its own, retries and dead letters, one store transaction per round."""

from __future__ import annotations

import asyncio
import json
import random
from typing import Callable

import pytest

from alerts.config import parse_alerting_config
from alerts.notification import Notification, Notifier
from alerts.pipeline.dispatch_engine import INTERNAL_RULE, Engine
from alerts.runtime.delivery import DeliveryManager
from alerts.runtime.delivery_order import DeliveryOrder, order_keys
from alerts.runtime.store import OutboxRow, Store
from cityeye.errors import ConfigError, PermanentDeliveryError, RetryableDeliveryError
from tests.alerting_helpers import config
from tests.kafka_helpers import wait_until
from tests.notify_helpers import sample_alert


def note(receiver: str, group: str, version: int, alerts: tuple[int, ...] = (), t: float = 0.0) -> Notification:
    """Version ``version`` of group ``group`` for ``receiver``, about alerts ``alert-<i>`` (default: one of its own)."""
    snaps = [sample_alert(i) for i in alerts] or [sample_alert(0, alert_id=f"alert-of-{group}")]
    return Notification(receiver=receiver, group_key=group, group_labels={"group": group}, version=version,
                        status="firing", reason="new" if version == 1 else "update", alerts=snaps, created_at=t)


class Desk(Notifier):
    """A receiver that answers after ``delay(note)`` seconds (or when ``gate(note)`` is set) with
    ``answer(note, attempt)`` (None: success, else the exception to raise); records what it saw."""

    def __init__(self, name: str, delay: Callable[[Notification], float] = lambda n: 0.0,
                 answer: Callable[[Notification, int], Exception | None] = lambda n, a: None,
                 gate: Callable[[Notification], asyncio.Event | None] = lambda n: None) -> None:
        self.name, self.delay, self.answer, self.gate = name, delay, answer, gate
        self.started: list[Notification] = []
        self.delivered: list[Notification] = []
        self.in_flight: dict[str, frozenset[str]] = {}
        self.most_in_flight = 0
        #: sends that began while another with a shared group or alert was still in flight
        self.overlaps: list[tuple[str, str]] = []

    async def send(self, n: Notification) -> None:
        keys = order_keys(n.to_dict())
        self.overlaps += [(n.id, other) for other, k in self.in_flight.items() if k & keys]
        self.in_flight[n.id] = keys
        self.most_in_flight = max(self.most_in_flight, len(self.in_flight))
        self.started.append(n)
        try:
            gate = self.gate(n)
            if gate is not None:
                await gate.wait()
            await asyncio.sleep(self.delay(n))
            failure = self.answer(n, sum(s.id == n.id for s in self.started))
            if failure is not None:
                raise failure
            self.delivered.append(n)
        finally:
            del self.in_flight[n.id]

    def versions(self, group: str, sends: list[Notification] | None = None) -> list[int]:
        return [n.version for n in (self.started if sends is None else sends) if n.group_key == group]


def queue(engine: Engine, notes: list[Notification]) -> None:
    with engine.store.transaction():
        for n in notes:
            engine.enqueue(n, n.created_at)


class Delivering:
    """``DeliveryManager.run`` in a task for the duration of an ``async with``."""

    def __init__(self, tmp_path, desks: list[Desk], **delivery) -> None:
        names = [d.name for d in desks]
        # the internal alert about a failing receiver goes to "fallback" when there is one
        route = {"routes": [{"match": {"kind": "system"}, "receiver": "fallback"}]} if "fallback" in names else {}
        cfg = config(names, delivery=delivery, route=route)
        self.engine = Engine(cfg, Store(tmp_path / "s.sqlite"))
        self.letters: list[dict] = []

        async def publish(record: dict) -> None:
            self.letters.append(record)

        self.manager = DeliveryManager(self.engine, {d.name: d for d in desks}, cfg.delivery, publish)
        self.stop = asyncio.Event()

    async def __aenter__(self) -> "Delivering":
        self.task = asyncio.create_task(self.manager.run(self.stop))
        return self

    async def __aexit__(self, *exc) -> None:
        self.stop.set()
        await asyncio.wait_for(self.task, 10)

    def queue(self, notes: list[Notification]) -> None:
        queue(self.engine, notes)
        self.manager.wake()

    async def drained(self, timeout: float = 20.0) -> None:
        assert await wait_until(lambda: self.engine.store.outbox_size() == 0, timeout, every=0.01), \
            f"{self.engine.store.outbox_size()} notification(s) still queued"


def rows(*notes: Notification) -> list[OutboxRow]:
    return [OutboxRow(n.id, n.receiver, 0, 0.0, "", json.dumps(n.to_dict())) for n in notes]


# -- the admission rule on its own ------------------------------------------------------------------


def test_order_admits_up_to_the_cap_and_holds_back_what_shares_a_group_or_an_alert():
    a1, a2 = note("desk", "a", 1), note("desk", "a", 2)
    b1 = note("desk", "b", 1, alerts=(7,))
    c1 = note("desk", "c", 1, alerts=(7, 8))  # shares alert 7 with b1
    d1 = note("desk", "d", 1, alerts=(8,))    # shares alert 8 with c1, which waits: d1 waits too
    e1, f1 = note("desk", "e", 1), note("desk", "f", 1)
    order = DeliveryOrder(concurrency=3)
    admitted = order.admit(rows(a1, a2, b1, c1, d1, e1, f1))
    assert [r.id for r, _ in admitted] == [a1.id, b1.id, e1.id]
    assert order.in_flight == 3 and order.free == 0
    assert order.admit(rows(a1, a2, b1, c1, d1, e1, f1)) == []  # full
    order.settle(b1.id)
    assert [r.id for r, _ in order.admit(rows(a1, a2, c1, d1, e1, f1))] == [c1.id]  # not d1: c1 is before it
    order.settle(a1.id)
    order.settle(c1.id)
    assert [r.id for r, _ in order.admit(rows(a2, d1, e1, f1))] == [a2.id, d1.id]


def test_order_keys_and_the_config_bounds():
    assert order_keys(note("desk", "district=pudong", 1, alerts=(1, 2)).to_dict()) == {
        "group:district=pudong", "alert:alert-1", "alert:alert-2"}
    assert config(["desk"]).delivery.concurrency == 16
    for bad in (0, -1, 257, "many"):
        with pytest.raises(ConfigError, match="delivery.concurrency"):
            parse_alerting_config({"receivers": [{"name": "d", "type": "webhook", "url": "http://127.0.0.1:9/"}],
                                   "route": {"receiver": "d"}, "delivery": {"concurrency": bad}}, "test")
    with pytest.raises(ValueError):
        DeliveryOrder(concurrency=0)


# -- the delivery workers -----------------------------------------------------------------------------


async def test_each_groups_notifications_arrive_in_order_under_concurrency(tmp_path):
    rng = random.Random(7)
    desk = Desk("desk", delay=lambda n: rng.uniform(0, 0.02))
    groups = [f"district-{g}" for g in range(8)]
    # six versions per group, interleaved as the engine would queue them; every group's versions also
    # share an alert with the next group's (alert g shared by groups g and g+1)
    notes = [note("desk", g, v, alerts=(i, i + 1), t=v) for v in range(1, 7) for i, g in enumerate(groups)]
    async with Delivering(tmp_path, [desk], concurrency=16) as d:
        d.queue(notes)
        await d.drained()
    assert desk.overlaps == []
    for g in groups:
        assert desk.versions(g) == [1, 2, 3, 4, 5, 6]
    assert len(desk.delivered) == 48 and d.engine.store.delivered_count("desk") == 48
    assert desk.most_in_flight >= 2  # it did send concurrently (groups not sharing an alert)


async def test_the_concurrency_cap_is_honoured(tmp_path):
    desk = Desk("desk", delay=lambda n: 0.01)
    async with Delivering(tmp_path, [desk], concurrency=4) as d:
        d.queue([note("desk", f"sensor-{i}", 1) for i in range(40)])
        await d.drained()
    assert desk.most_in_flight == 4 and len(desk.delivered) == 40


async def test_one_store_transaction_per_round_not_per_notification(tmp_path):
    desk = Desk("desk")
    async with Delivering(tmp_path, [desk], concurrency=16) as d:
        commits: list[str] = []
        d.engine.store.db.set_trace_callback(lambda sql: commits.append(sql) if sql == "COMMIT" else None)
        d.queue([note("desk", f"sensor-{i}", 1) for i in range(160)])
        await d.drained()
    # one per notification was 2 x 160 (the attempt, then the outcome); a round commits up to 16 of each
    assert len(desk.delivered) == 160 and len(commits) <= 40, len(commits)


async def test_a_slow_send_holds_back_only_its_own_group(tmp_path):
    release = asyncio.Event()
    slow_first = note("desk", "slow", 1)
    desk = Desk("desk", gate=lambda n: release if n.id == slow_first.id else None)
    async with Delivering(tmp_path, [desk], concurrency=4) as d:
        d.queue([slow_first, note("desk", "slow", 2, t=1)] + [note("desk", f"g{i}", 1, t=1) for i in range(20)])
        assert await wait_until(lambda: len(desk.delivered) == 20, 10, every=0.01)
        assert desk.versions("slow") == [1]  # version 2 waits for version 1
        release.set()
        await d.drained()
    assert desk.versions("slow", desk.delivered) == [1, 2]


async def test_a_slow_receiver_does_not_hold_back_another(tmp_path):
    hung = asyncio.Event()
    slow, fast = Desk("slow", gate=lambda n: hung), Desk("fast")
    async with Delivering(tmp_path, [slow, fast], concurrency=2) as d:
        d.queue([note(r, f"g{i}", 1) for i in range(30) for r in ("slow", "fast")])
        assert await wait_until(lambda: len(fast.delivered) == 30, 10, every=0.01)
        assert len(slow.started) == 2 and slow.delivered == []  # its two slots are taken, the rest wait
        # the desk has them before the round that records them commits: wait for that commit too
        assert await wait_until(lambda: d.engine.store.delivered_count("fast") == 30, 10, every=0.01)
        assert d.engine.store.delivered_count("slow") == 0 and slow.delivered == []
        hung.set()
        await d.drained()
    assert len(slow.delivered) == 30


async def test_retries_and_dead_letters_under_concurrency(tmp_path):
    """5xx: retried with the same id while the others go on; 404: dead-lettered at once; the rest once each."""
    flaky, refused = note("desk", "flaky", 1), note("desk", "refused", 1)

    def answer(n: Notification, attempt: int) -> Exception | None:
        if n.id == flaky.id and attempt <= 2:
            return RetryableDeliveryError("HTTP 503", status=503)
        if n.id == refused.id:
            return PermanentDeliveryError("HTTP 404", status=404)
        return None

    desk = Desk("desk", answer=answer, delay=lambda n: 0.005)
    others = [note("desk", f"g{i}", 1) for i in range(30)]
    async with Delivering(tmp_path, [desk, Desk("fallback")], concurrency=8, backoff_initial=0.5,
                          backoff_max=0.5) as d:
        store = d.engine.store
        d.queue([flaky, refused, *others])
        assert await wait_until(lambda: all(store.delivered(n.id) for n in others)
                                and store.dead_notification(refused.id), 10, every=0.01)
        [waiting] = store.outbox_due("desk", float("inf"))
        assert waiting.id == flaky.id and waiting.attempts < 3  # the others did not wait for its retries
        await d.drained()
    assert [n.id for n in desk.started].count(flaky.id) == 3 and store.delivered(flaky.id)
    assert store.db.execute("SELECT attempts FROM notification_log WHERE id = ?", (flaky.id,)).fetchone() == (3,)
    assert [n.id for n in desk.started].count(refused.id) == 1 and not store.delivered(refused.id)
    assert len(desk.started) == 3 + 1 + 30 and len(desk.delivered) == 31
    assert store.dead_notification(refused.id)["state"] == "dead"
    [letter] = d.letters
    assert letter["reason"] == "permanent failure: HTTP 404" and letter["notification"]["id"] == refused.id
    assert [dl["reason"] for dl in store.deadletters("notification")] == [letter["reason"]]
    # the 404 raised the internal alert about the receiver, and its next success resolved it
    [internal] = [a for a in store.resolved_alerts() if a["sensor_id"] == "receiver:desk"]
    assert internal["rule"] == INTERNAL_RULE
