"""timings.clock: event -- the dispatcher's timers on the alert events' own time (fake clocks, no Kafka).

The replay through real Kafka is in tests/test_alerts_dispatch.py; here the
partition state is fed records directly, so each step is exact.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field

import pytest

from alerts.config import parse_alerting_config
from alerts.runtime.delivery import DeliveryManager
from alerts.runtime.event_clock import EventClock
from alerts.runtime.partition import PartitionState
from cityeye.config import InfluxSettings, Settings
from cityeye.contracts import AlertEvent, parse_ts, to_json
from cityeye.errors import ConfigError, RetryableDeliveryError
from tests.alerting_helpers import config, event, recorded_flood
from tests.test_alerts_delivery import ScriptedNotifier

T0 = parse_ts("2019-07-01T08:00:00Z")
WALL = parse_ts("2026-12-03T10:00:00Z")


@dataclass
class Record:
    """What :meth:`PartitionState.apply_records` reads of a Kafka record."""

    value: bytes
    offset: int = 0
    topic: str = "alerts.grouped"
    partition: int = 0
    headers: list = field(default_factory=list)


def records(events: list[AlertEvent]) -> list[Record]:
    return [Record(to_json(ev), i) for i, ev in enumerate(events)]


def partition(tmp_path, clock: str, wall: list[float], notifiers=None) -> PartitionState:
    cfg = config(route={"group_wait": 30, "group_interval": 60},
                 timings={"keep_firing_for": 300, "clock": clock})
    return PartitionState(tmp_path / "p0.sqlite", Settings(influx=InfluxSettings(enabled=False)), cfg,
                          notifiers or {}, None, None, lambda: wall[0])


def notified(state: PartitionState) -> list[tuple[str, list[tuple[str, str, str]]]]:
    rows = state.store.outbox_due("desk", float("inf"), limit=1000)
    return [(n["reason"], [(a["alert_id"], a["state"], a["severity"]) for a in n["alerts"]])
            for n in (json.loads(r.body) for r in rows)]


def test_the_event_clock_is_the_latest_event_time_plus_the_wall_time_since():
    wall = [WALL]
    clock = EventClock(lambda: wall[0])
    assert clock() == WALL  # nothing seen: the wall clock
    clock.observe(T0)
    assert clock() == T0
    wall[0] += 2.5
    assert clock() == T0 + 2.5  # moves on between events, so timers fall due
    clock.observe(T0 + 1)  # older than the clock: it never goes back
    assert clock() == T0 + 2.5
    before = clock.reading()
    clock.observe(T0 + 3600)
    assert clock() == T0 + 3600
    clock.rewind(before)
    assert clock() == T0 + 2.5
    clock.observe(None)
    assert clock() == T0 + 2.5


def test_a_replayed_flood_on_event_time_resolves_between_episodes_and_notifies_the_orange_escalation(tmp_path):
    wall = [WALL]
    state = partition(tmp_path, "event", wall)
    flood = recorded_flood("wl-01", T0)
    state.apply_records(records(flood))  # one batch: 75 minutes of the data's time in no wall time at all
    first, second, third = (state.engine.get(flood[i].alert_id) for i in (0, 2, 4))
    # keep-firing-for (300 s) ran on the data's clock: each episode resolved before the next one fired
    assert (first.state, first.ended_at) == ("resolved", T0 + 900 + 300)
    assert (second.state, second.ended_at) == ("resolved", T0 + 2700 + 300)
    assert third.state == "firing" and third.severity == "orange"
    assert not any(a.flapping or "flapping" in [e.action for e in a.timeline] for a in (first, second, third))
    assert state.ticked_at == T0 + 4500
    wall[0] += 60  # the group interval passes (on the event clock, moved by the wall since the last event)
    state.engine.tick(state.clock())
    sent = notified(state)
    assert "flapping" not in [reason for reason, _ in sent]
    assert sent[-1][1] == [(third.alert_id, "firing", "orange")]
    assert [a for _, alerts in sent for a in alerts if a[0] == first.alert_id] == [
        (first.alert_id, "firing", "yellow"), (first.alert_id, "resolved", "yellow")]


def test_the_same_replay_on_the_wall_clock_flaps_and_never_notifies_orange(tmp_path):
    wall = [WALL]
    state = partition(tmp_path, "wall", wall)
    flood = recorded_flood("wl-01", T0)
    state.apply_records(records(flood))
    [alert] = state.engine.active.values()  # every episode refired the first alert within keep-firing-for
    assert alert.alert_id == flood[0].alert_id and alert.flapping and alert.severity == "orange"
    wall[0] += 3600
    state.engine.tick(state.clock())
    sent = notified(state)
    assert [reason for reason, _ in sent] == ["flapping"]
    assert ("orange" not in {sev for _, alerts in sent[1:] for *_, sev in alerts})


def test_a_restarted_partition_resumes_from_the_latest_event_time_in_its_state_file(tmp_path):
    wall = [WALL]
    state = partition(tmp_path, "event", wall)
    flood = recorded_flood("wl-01", T0)
    state.apply_records(records(flood[:2]))  # raised, then resolve pending until T0 + 900 + 300
    state.close()
    wall[0] += 10
    again = partition(tmp_path, "event", wall)
    assert again.clock() == T0 + 900  # not the wall clock: that would resolve (and time out) everything at once
    again.engine.tick(again.clock())
    assert again.engine.get(flood[0].alert_id).state == "firing"
    wall[0] += 300
    again.engine.tick(again.clock())
    assert again.engine.get(flood[0].alert_id).ended_at == T0 + 900 + 300


async def test_on_event_time_ahead_of_the_wall_sends_at_once_and_retries_on_the_wall(tmp_path):
    """An accelerated simulation runs days ahead of the wall: its notifications must not wait for the wall."""
    wall = [WALL]
    desk = ScriptedNotifier("desk", [RetryableDeliveryError("HTTP 503")])
    state = partition(tmp_path, "event", wall, {"desk": desk})
    ahead = WALL + 5 * 86400
    state.apply_records(records([event("wl-01", severity="red", started_at=ahead, updated_at=ahead)]))
    wall[0] += 31  # group_wait on the event clock
    state.engine.tick(state.clock())
    manager: DeliveryManager = state.delivery
    [row] = state.store.outbox_due("desk", manager.wall())  # queued at event time, due at once
    assert row.next_attempt > manager.wall()
    assert await manager.deliver_one(row, desk) == "retrying"
    [retry] = state.store.outbox_due("desk", float("inf"))
    assert retry.next_attempt == pytest.approx(wall[0] + 0.05)  # backoff_initial on the wall clock
    assert state.store.outbox_due("desk", wall[0]) == []
    wall[0] += 0.05
    [retry] = state.store.outbox_due("desk", manager.wall())
    assert await manager.deliver_one(retry, desk) == "delivered"
    [alert] = state.engine.active.values()
    assert [e.ts >= ahead for e in alert.timeline if e.action == "notified"] == [True, True]  # recorded on event time


def test_timings_clock_is_wall_or_event():
    assert config().timings.clock == "wall"
    with pytest.raises(ConfigError, match="timings.clock"):
        parse_alerting_config({"receivers": [{"name": "desk", "type": "webhook", "url": "http://127.0.0.1:9/"}],
                               "route": {"receiver": "desk"}, "timings": {"clock": "data"}}, "alerting.yaml")
