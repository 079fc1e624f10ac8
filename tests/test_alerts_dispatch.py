"""The dispatcher against real servers: Tansu Kafka, aiohttp receivers, InfluxDB, a subprocess.

Unsharded (the default) one dispatcher owns every partition of ``alerts.grouped``
and every alert is in partition 0's state (:func:`home`).
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sys
from pathlib import Path

import aiohttp
import pytest
import yaml

from alerts.dispatcher import Dispatcher
from alerts.runtime.history import query_history
from alerts.runtime.partition import PartitionState
from alerts.runtime.sharding import UNSHARDED_PARTITION
from alerts.runtime.store import Store, state_path
from cityeye.config import InfluxSettings, Settings
from cityeye.contracts import (TOPIC_ALERTS, TOPIC_ALERTS_GROUPED, TOPIC_NOTIFICATIONS_DEADLETTER, TOPIC_PARTITIONS,
                               AlertEvent, parse_ts, to_json)
from cityeye.kafka import make_consumer, make_producer
from tests.alerting_helpers import Receiver, config, event, recorded_flood

REPO = Path(__file__).resolve().parent.parent
TOKEN = "test-token-0123456789"


async def produce(kafka_settings, events: list[AlertEvent | bytes], by_sensor: bool = False) -> None:
    """Events to alerts.events keyed by alert id (as the stream worker does), or by sensor id (one partition: in order)."""
    producer = make_producer(kafka_settings, "test")
    await producer.start()
    try:
        for ev in events:
            raw = ev if isinstance(ev, bytes) else to_json(ev)
            key = b"x" if isinstance(ev, bytes) else (ev.sensor_id if by_sensor else ev.alert_id).encode()
            await producer.send_and_wait(TOPIC_ALERTS, raw, key=key)
    finally:
        await producer.stop()


async def wait_until(predicate, timeout: float = 20.0, what: str = "condition") -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while not predicate():
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.02)


def home(d: Dispatcher) -> PartitionState:
    """The state holding every alert of an unsharded dispatcher."""
    state = d.partitions.state(UNSHARDED_PARTITION)
    assert state is not None, "partition 0 is not owned"
    return state


async def ticked_past(state: PartitionState, t: float) -> None:
    """Barrier: the partition's timers have decided everything due by clock time ``t``."""
    await wait_until(lambda: state.ticked_at >= t, what=f"a timer tick at or after {t}")


class Running:
    """An in-process dispatcher on the test's loop, returned once it owns every partition."""

    def __init__(self, settings: Settings, cfg) -> None:
        self.dispatcher = Dispatcher(settings, cfg, api_port=0)
        self.stop = asyncio.Event()

    async def __aenter__(self) -> Dispatcher:
        self.task = asyncio.create_task(self.dispatcher.run(self.stop))
        ready = asyncio.create_task(self.dispatcher.ready.wait())
        await asyncio.wait([self.task, ready], return_when=asyncio.FIRST_COMPLETED)
        if self.task.done():
            self.task.result()
        await wait_until(lambda: len(self.dispatcher.partitions.numbers()) == TOPIC_PARTITIONS[TOPIC_ALERTS_GROUPED]
                         or self.task.done(), what="every partition owned")
        if self.task.done():
            self.task.result()
        return self.dispatcher

    async def __aexit__(self, *exc) -> None:
        self.stop.set()
        await self.task


def webhook(name: str, receiver: Receiver, path: str | None = None) -> dict:
    return {"name": name, "type": "webhook", "url": receiver.url(path or name)}


def dispatcher_settings(kafka, tmp_path, influx: InfluxSettings | None = None) -> Settings:
    return Settings(kafka=kafka.settings, influx=influx or InfluxSettings(enabled=False),
                    state_dir=str(tmp_path / "state"))


def outbox_size(state_dir: Path) -> int:
    """Unsent notifications in partition 0's state file (read-only, as another process sees it)."""
    path = state_path(state_dir, UNSHARDED_PARTITION)
    if not path.exists():
        return -1
    store = Store(path, readonly=True)
    try:
        return store.outbox_size()
    finally:
        store.close()


async def test_receiver_500_three_times_then_200_gets_one_notification(kafka, tmp_path):
    rx = await Receiver(script=[500, 500, 500]).start()
    try:
        cfg = config(receivers=[webhook("desk", rx)])
        async with Running(dispatcher_settings(kafka, tmp_path), cfg) as d:
            await produce(kafka.settings, [event("wl-01", severity="red")])
            await wait_until(lambda: rx.received, what="delivery")
            await wait_until(lambda: home(d).store.outbox_size() == 0, what="empty outbox")
            assert len(rx.keys) == 4 and len(set(rx.keys)) == 1
            assert rx.distinct_delivered() == 1 and len(rx.received) == 1
            alert = next(iter(home(d).engine.active.values()))
            statuses = [(e.attempt, e.status) for e in alert.timeline if e.action == "notified"]
            assert statuses == [(1, "retrying"), (2, "retrying"), (3, "retrying"), (4, "delivered")]
    finally:
        await rx.stop()


async def test_permanent_failure_dead_letters_and_raises_internal_alert(kafka, tmp_path):
    rx = await Receiver(script=[400]).start()
    try:
        cfg = config(receivers=[webhook("desk", rx), webhook("fallback", rx)],
                     route={"routes": [{"match": {"kind": "system"}, "receiver": "fallback"}]})
        async with Running(dispatcher_settings(kafka, tmp_path), cfg) as d:
            await produce(kafka.settings, [event("wl-01"), b"{not json"])
            await wait_until(lambda: rx.to("fallback"), what="internal alert at the fallback receiver")
            internal = rx.to("fallback")[0]["alerts"][0]
            assert internal["rule"] == "receiver_failing" and "desk" in internal["sensor_id"]
            assert [dl["reason"] for dl in home(d).store.deadletters("notification")][0].startswith("permanent failure")
            assert "not JSON" in home(d).store.deadletters("alert_event")[0]["reason"]
        consumer = make_consumer(kafka.settings, TOPIC_NOTIFICATIONS_DEADLETTER, group=None)
        await consumer.start()
        try:
            batches = await consumer.getmany(timeout_ms=3000)
            kinds = sorted(json.loads(r.value)["kind"] for part in batches.values() for r in part)
        finally:
            await consumer.stop()
        assert kinds == ["alert_event", "notification"]
    finally:
        await rx.stop()


async def test_district_flood_grouping_escalation_ack_silence_resolve_history(kafka, tmp_path, influx_settings):
    rx = await Receiver().start()
    cap = {"name": "cap", "type": "cap", "sender": "cityeye@ops.example", "url": rx.url("cap")}
    cfg = config(
        receivers=[webhook("desk", rx), webhook("district", rx), cap],
        route={"group_wait": 1.0, "group_interval": 0.2, "escalation": ["district"],
               "routes": [{"match": {"kind": "water_level"}, "receiver": "cap", "continue": True},
                          {"match": {"kind": "water_level"}, "receiver": "desk"}]},
        timings={"escalate_after": 1.5, "reminder_every": 0.5},
        api={"token": TOKEN},
    )
    gauges = [f"wl-pd-{i:02d}" for i in range(10)]
    api_headers = {"Authorization": f"Bearer {TOKEN}"}
    try:
        async with Running(dispatcher_settings(kafka, tmp_path, influx_settings), cfg) as d, \
                aiohttp.ClientSession(f"http://127.0.0.1:{d.api_port}", headers=api_headers) as http:
            silence = {"matchers": ["sensor=wl-pd-09"], "duration": "1h", "created_by": "officer-wang",
                       "comment": "gauge under maintenance"}
            async with http.post("/api/v1/silences", json=silence, headers=api_headers) as r:
                assert r.status == 201, await r.text()
            await produce(kafka.settings, [event(g, severity="orange") for g in gauges])
            await wait_until(lambda: rx.to("desk") and rx.to("cap"), what="grouped notifications")
            desk = rx.to("desk")
            assert len(desk) == 1 and desk[0]["reason"] == "new"
            assert sorted(a["sensor_id"] for a in desk[0]["alerts"]) == gauges[:9]
            assert desk[0]["summary"].startswith("[FIRING:9]")
            assert [n["msgType"] for n in rx.to("cap")] == ["Alert"]
            async with http.get("/api/v1/alerts", params={"state": "silenced"}) as r:
                assert [a["sensor_id"] for a in (await r.json())["alerts"]] == ["wl-pd-09"]

            await wait_until(lambda: rx.reasons("district")["escalation"] == 1, what="escalation")
            await wait_until(lambda: rx.reasons("district")["reminder"] >= 1, what="a reminder")
            for alert_id in [a["alert_id"] for a in desk[0]["alerts"]]:
                async with http.post(f"/api/v1/alerts/{alert_id}/ack", json={"by": "officer-li"},
                                     headers=api_headers) as r:
                    assert r.status == 200, await r.text()
            # a reminder already queued before the ack may still arrive: wait until the outbox is empty
            await wait_until(lambda: home(d).store.outbox_size() == 0, what="queued notifications sent")
            counts = {p: len(rx.to(p)) for p in ("desk", "district", "cap")}
            await ticked_past(home(d), d.clock() + 1.5)  # three reminder periods decided
            await wait_until(lambda: home(d).store.outbox_size() == 0, what="nothing queued")
            assert {p: len(rx.to(p)) for p in ("desk", "district", "cap")} == counts

            await produce(kafka.settings, [event(g, "resolved", "orange", updated_at=2000) for g in gauges])
            await wait_until(lambda: rx.reasons("desk")["resolved"] == 1, what="resolved notification")
            await wait_until(lambda: "Cancel" in [n["msgType"] for n in rx.to("cap")], what="CAP Cancel")
            resolved = [a["sensor_id"] for n in rx.to("desk") for a in n["alerts"] if a["state"] == "resolved"]
            assert sorted(resolved) == gauges[:9]  # each reported resolved exactly once
            assert all(n["alerts"] and "wl-pd-09" not in {a["sensor_id"] for a in n["alerts"]} for n in rx.to("desk"))
            assert rx.distinct_delivered() == len(rx.delivered_keys)
            await wait_until(lambda: home(d).store.history_batch(1) == [], what="history shipped")
        history = await query_history(influx_settings, "wl-pd-00")
        actions = [h["action"] for h in history]
        for expected in ("raised", "acknowledged", "notified", "resolve_pending", "resolved"):
            assert expected in actions, actions
        assert {h["actor"] for h in history if h["action"] == "acknowledged"} == {"officer-li"}
        assert {h["receiver"] for h in history if h["action"] == "notified"} >= {"desk", "cap", "district"}
        silenced = await query_history(influx_settings, "wl-pd-09")
        assert "silenced" in [h["action"] for h in silenced]
        assert "notified" not in [h["action"] for h in silenced]
    finally:
        await rx.stop()


class DispatcherProcess:
    """``cityeye dispatcher`` as a subprocess (so it can be killed with SIGKILL) over the test's Kafka and
    ``state_dir``, delivering to ``rx`` with ``route`` and ``delivery`` settings."""

    def __init__(self, kafka, tmp_path: Path, rx: Receiver, route: dict, delivery: dict) -> None:
        settings_file, alerting_file = tmp_path / "cityeye.yaml", tmp_path / "alerting.yaml"
        settings_file.write_text(yaml.safe_dump({
            "kafka": {"bootstrap": kafka.settings.bootstrap, "profile": "tansu",
                      "consumer_group_prefix": kafka.settings.consumer_group_prefix},
            "influx": {"enabled": False}, "state_dir": str(tmp_path / "state")}))
        alerting_file.write_text(yaml.safe_dump({
            "receivers": [webhook("desk", rx)], "route": {"receiver": "desk", **route},
            "timings": {"keep_firing_for": 0, "tick": 0.05}, "delivery": delivery, "api": {"enabled": False}}))
        self.cmd = [sys.executable, "-m", "launch.cli", "dispatcher", "--config", str(settings_file),
                    "--alerting", str(alerting_file)]
        self.proc: asyncio.subprocess.Process | None = None

    async def start(self) -> None:
        self.proc = await asyncio.create_subprocess_exec(
            *self.cmd, cwd=str(REPO), env={**os.environ, "PYTHONPATH": str(REPO)},
            stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.DEVNULL)

    async def kill_9(self) -> None:
        self.proc.send_signal(signal.SIGKILL)
        await self.proc.wait()

    async def terminate(self) -> int:
        self.proc.send_signal(signal.SIGTERM)
        return await asyncio.wait_for(self.proc.wait(), 20)

    async def cleanup(self) -> None:
        if self.proc is not None and self.proc.returncode is None:
            self.proc.kill()
            await self.proc.wait()


async def test_kill_9_mid_retry_then_restart_delivers_the_same_notification_once(kafka, tmp_path):
    rx = await Receiver(script=[503] * 10_000).start()
    proc = DispatcherProcess(kafka, tmp_path, rx, route={"group_wait": 0, "group_interval": 0},
                             delivery={"max_attempts": 1000, "backoff_initial": 0.05, "backoff_max": 0.1})
    try:
        await proc.start()
        await produce(kafka.settings, [event("wl-01", severity="red")])
        await wait_until(lambda: len(rx.keys) >= 3, timeout=30, what="retries before the kill")
        await proc.kill_9()
        key_before = set(rx.keys)
        assert len(key_before) == 1 and rx.received == []
        rx.script.clear()  # the receiver is healthy again
        await proc.start()
        await wait_until(lambda: rx.received, timeout=30, what="delivery after restart")
        # a duplicate could only come from the outbox: wait until the restarted dispatcher emptied it
        await wait_until(lambda: outbox_size(tmp_path / "state") == 0, timeout=30, what="empty outbox")
        assert set(rx.keys) == key_before
        assert rx.distinct_delivered() == 1 and len(rx.delivered_keys) == 1
        assert await proc.terminate() == 0
    finally:
        await proc.cleanup()
        await rx.stop()


async def test_kill_9_mid_burst_loses_nothing_and_repeats_at_most_the_sends_in_flight(kafka, tmp_path):
    """A burst sent 8 at a time; ``kill -9`` halfway: after the restart every notification has arrived, and
    only sends that were in flight at the kill (at most ``delivery.concurrency``) arrive twice."""
    burst, concurrency = 240, 8
    rx = await Receiver(default=200, script=[0.03] * 100_000).start()  # each answer takes 30 ms
    proc = DispatcherProcess(kafka, tmp_path, rx, route={"group_by": ["sensor"], "group_wait": 0, "group_interval": 0},
                             delivery={"concurrency": concurrency})
    sensors = {f"wl-burst-{i:03d}" for i in range(burst)}
    arrived = lambda: {a["sensor_id"] for n in rx.received for a in n["alerts"]}  # noqa: E731
    try:
        await proc.start()
        await produce(kafka.settings, [event(s, severity="red") for s in sorted(sensors)])
        await wait_until(lambda: len(rx.keys) >= burst // 3, timeout=60, what="a third of the burst")
        await proc.kill_9()
        before = list(rx.keys)
        assert len(before) < burst, "the burst was over before the kill"
        await proc.start()
        await wait_until(lambda: arrived() == sensors, timeout=60, what="every notification after the restart")
        await wait_until(lambda: outbox_size(tmp_path / "state") == 0, timeout=30, what="empty outbox")
        assert await proc.terminate() == 0
        repeated = {key for key in set(rx.keys) if rx.keys.count(key) > 1}
        assert repeated <= set(before)  # only sends begun before the kill are repeated ...
        assert len(repeated) <= concurrency, len(repeated)  # ... at most one per slot in flight
        assert len(rx.keys) == burst + len(repeated) and all(rx.keys.count(key) <= 2 for key in repeated)
        state = Store(state_path(tmp_path / "state", UNSHARDED_PARTITION), readonly=True)
        try:
            assert state.delivered_count("desk") == burst
        finally:
            state.close()
    finally:
        await proc.cleanup()
        await rx.stop()


async def test_without_influx_no_history_accumulates(kafka, tmp_path):
    rx = await Receiver().start()
    try:
        async with Running(dispatcher_settings(kafka, tmp_path), config(receivers=[webhook("desk", rx)])) as d:
            await produce(kafka.settings, [event("wl-01")])
            await wait_until(lambda: rx.received, what="delivery")
            # the receiver has the request before the dispatcher records the answer
            alert = next(iter(home(d).engine.active.values()))
            await wait_until(lambda: len(alert.timeline) >= 2, what="the delivery in the timeline")
            assert [e.action for e in alert.timeline] == ["raised", "notified"]
            assert home(d).store.history_batch(10) == []
    finally:
        await rx.stop()


@pytest.mark.parametrize("clock", ["event", "wall"])
async def test_a_replayed_flood_escalates_to_orange_on_event_time_and_flaps_on_the_wall_clock(kafka, tmp_path, clock):
    """A 2019 flood's alert events, 15 minutes apart in event time, replayed milliseconds apart.

    On event time each yellow episode resolves (keep-firing-for 5 min of the data's time) before
    the next one fires, and the escalation to orange is notified. On the wall clock (the old
    behaviour) every episode is a refire within keep-firing-for: the alert flaps, and orange is
    never sent.
    """
    rx = await Receiver().start()
    cfg = config(receivers=[webhook("desk", rx)], route={"group_wait": 1, "group_interval": 1},
                 timings={"keep_firing_for": 300, "clock": clock})
    flood = recorded_flood("wl-gauge-7", parse_ts("2019-07-01T08:00:00Z"))
    ids = list(dict.fromkeys(ev.alert_id for ev in flood))
    sent = lambda: [(n["reason"], a["alert_id"], a["severity"]) for n in rx.to("desk") for a in n["alerts"]]  # noqa: E731
    try:
        async with Running(dispatcher_settings(kafka, tmp_path), cfg) as d:
            # keyed by sensor: the episodes' events stay in order (keyed by alert id, the router may interleave
            # the alerts.events partitions, and a later episode's event could overtake an earlier one's)
            await produce(kafka.settings, flood, by_sensor=True)
            if clock == "event":
                await wait_until(lambda: (ids[2], "orange") in [(i, sev) for _, i, sev in sent()],
                                 what="the orange escalation")
                alerts = [home(d).engine.get(i) for i in ids]
                assert [a.state for a in alerts] == ["resolved", "resolved", "firing"]
                assert not any(a.flapping or "flapping" in [e.action for e in a.timeline] for a in alerts)
                assert "flapping" not in [reason for reason, *_ in sent()]
                assert {i for _, i, _ in sent()} == set(ids)  # three episodes, each notified
            else:
                await wait_until(lambda: rx.reasons("desk")["flapping"] == 1, what="the flapping notice")
                [alert] = home(d).engine.active.values()
                await wait_until(lambda: alert.severity == "orange", what="the last event applied")
                assert alert.flapping and alert.alert_id == ids[0]
                await ticked_past(home(d), d.clock() + 2)  # group wait and interval decided
                await wait_until(lambda: home(d).store.outbox_size() == 0, what="nothing queued")
                assert "orange" not in [sev for _, _, sev in sent()]
    finally:
        await rx.stop()
