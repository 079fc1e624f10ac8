"""Alerts file cases by policy, related alerts group, overdue cases escalate grid → street → district → city,
duty desks get CAP notices with the grid's polygon, and the evaluation figures reach InfluxDB."""

from __future__ import annotations

import asyncio
import csv
import io

import pytest

from cases.sla import SlaConfig
from cityeye.config import InfluxSettings, Settings
from cityeye.contracts import TOPIC_ALERTS, to_json
from alerts.sinks.influx import InfluxSink
from tests.cases_helpers import (CasesHarness, T0, alert_event, cases_config, database_url,  # noqa: F401
                                 pg_server)
from tests.kafka_helpers import produce
from tests.sink_helpers import query


@pytest.fixture
async def demo(database_url, tmp_path):
    """The demo's short SLA (urgent: accept in 15 s, reminder 5 s ahead); the ticker driven by the test."""
    h = await CasesHarness(cases_config(database_url, tmp_path / "cap", tick_s=3600.0),
                           Settings(influx=InfluxSettings(enabled=False))).start()
    h.cap_dir = tmp_path / "cap"
    yield h
    await h.close()


async def test_alerts_file_group_and_link(demo):
    s = demo.service
    first = alert_event(severity="orange")
    assert s.apply_alert(_raw(first)) == "filed"
    case = s.store.list_cases()[0]
    assert (case["state"], case["department"], case["dispatch_unit"], case["unit"], case["urgency"]) == (
        "dispatched", "water", "310101", "310101002-01", "urgent")
    assert (case["duty_unit"], case["source"], case["rule"]) == ("310101002-01", "alert", "flooding")
    rise = alert_event(rule="water_level.rate_of_rise", severity="yellow", at=T0 + 60)
    assert s.apply_alert(_raw(rise)) == "linked"                   # same grid and kind: the same case
    assert s.apply_alert(_raw(first)) == "duplicate"               # at-least-once input, applied once
    assert s.apply_alert(_raw(alert_event(state="resolved", alert_id=first.alert_id, at=T0 + 600))) == "linked"
    assert s.apply_alert(_raw(alert_event("wl-minhang-01", severity="blue", district="minhang"))) == "ignored"
    assert s.apply_alert(b"{not json") == "unreadable"
    assert s.apply_alert(_raw(alert_event("wl-minhang-01", severity="red", district="minhang"))) == "filed"
    cases = s.store.list_cases()
    assert [c["unit"] for c in cases] == ["310101002-01", "310112001-01"]
    status, detail = await demo.call("hp-disp", "GET", f"/C-{cases[0]['id']:06d}")
    assert [(a["rule"], a["state"]) for a in detail["alerts"]] == [
        ("water_level.warning", "firing"), ("water_level.rate_of_rise", "firing"), ("water_level.warning", "resolved")]
    assert [e["action"] for e in detail["timeline"]] == ["file", "alert_firing", "dispatch", "alert_firing",
                                                         "alert_resolved"]
    status, board = await demo.call("hp-disp", "GET", "")
    assert [c["unit"] for c in board] == ["310101002-01"]          # Minhang's case is not Huangpu's


def _raw(event) -> bytes:
    return to_json(event)


async def test_overdue_case_escalates_up_the_levels_and_desks_get_cap(demo):
    s = demo.service
    s.apply_alert(_raw(alert_event(severity="orange")))
    demo.now = T0 + 11                                             # reminder 5 s before the 15 s accept deadline
    await s.tick()
    demo.now = T0 + 16
    await s.tick()
    for step in (1, 2, 3):
        demo.now = T0 + 16 + 15 * step
        await s.tick()
    case = s.store.list_cases()[0]
    assert (case["duty_unit"], case["escalation_level"], case["state"]) == ("310000", 3, "dispatched")
    timeline = s.store.timeline(case["id"])
    escalations = [(e["detail"]["from_unit"], e["detail"]["to_unit"]) for e in timeline if e["action"] == "escalate"]
    assert escalations == [("310101002-01", "310101002"), ("310101002", "310101"), ("310101", "310000"),
                           ("310000", "310000")]
    assert [e["action"] for e in timeline].count("remind") == 1
    assert await s.deliver_outbox() == 5
    files = {d.name: sorted(d.glob("*.xml")) for d in demo.cap_dir.iterdir()}
    assert {k: len(v) for k, v in files.items()} == {"desk-grid": 1, "desk-street": 1, "desk-district": 1,
                                                     "desk-city": 2}
    street = files["desk-street"][0].read_text(encoding="utf-8")
    assert "超时升级" in street and "外滩街道" in street
    # <area> from the grid's GeoJSON boundary (lat,lon order, closed ring)
    assert "<polygon>31.232000,121.478000 31.232000,121.495000 31.250000,121.495000 31.250000,121.478000 " \
           "31.232000,121.478000</polygon>" in street
    # the late accept stage counts against the water authority, the escalations too
    status, rows = await demo.call("city-head", "GET", "/evaluation?by=department")
    water = next(r for r in rows if r["key"] == "water")
    assert (water["cases"], water["on_time_accept"], water["escalations"]) == (1, 0.0, 4)
    # acceptance late: the stage is judged late, time to accept measured
    demo.now += 5
    await demo.ok("water-hp", f"C-{case['id']:06d}", "accept")
    status, rows = await demo.call("city-head", "GET", "/evaluation?by=level")
    district = next(r for r in rows if r["key"] == "district")
    assert district["on_time_accept"] == 0.0 and district["accept_mean_s"] == pytest.approx(66.0)   # dispatched at T0, accepted at T0 + 66


async def test_evaluation_csv_and_influx(demo, influx_settings):
    s = demo.service
    s.apply_alert(_raw(alert_event(severity="orange")))
    s.apply_alert(_raw(alert_event("tr-jingan-01", kind="traffic", rule="traffic.speed_anomaly", severity="yellow",
                                   district="jingan")))
    demo.now = T0 + 10
    await demo.ok("water-hp", "C-000001", "accept")
    status, text = await demo.call("city-head", "GET", "/evaluation.csv?by=department")
    rows = list(csv.DictReader(io.StringIO(text)))
    assert [(r["key"], r["cases"], r["on_time_accept"], r["accept_mean_s"]) for r in rows] == [
        ("traffic", "1", "", ""), ("water", "1", "1.0", "10.0")]
    status, answer = await demo.call("city-head", "GET", "/evaluation?by=nothing")
    assert status == 400
    sink = InfluxSink(influx_settings)
    try:
        await s.ship_evaluation(sink)
    finally:
        await sink.close()
    points = query(influx_settings.url, influx_settings.database,
                   "SELECT cases, on_time_accept FROM case_evaluation WHERE \"by\" = 'department'")
    assert sorted((p["cases"], p["on_time_accept"] or 0.0) for p in points) == [(1, 0.0), (1, 1.0)]
    assert sum(p["on_time_accept"] is None for p in points) == 1      # traffic's case: no stage judged yet


async def test_the_service_files_cases_from_kafka_with_its_own_group(kafka, tmp_path):
    """Alert events on the real ``alerts.events`` topic (Tansu): read with the cases consumer group, each once."""
    settings = Settings(kafka=kafka.settings, influx=InfluxSettings(enabled=False))
    events = [alert_event(severity="red"), alert_event("tr-pudong-01", kind="traffic", rule="traffic.speed_anomaly",
                                                        severity="yellow", district="pudong")]
    await produce(kafka.settings, TOPIC_ALERTS, [(e.alert_id.encode(), to_json(e)) for e in events]
                  + [(b"junk", b"{not an alert")])
    h = await CasesHarness(cases_config(f"sqlite:///{tmp_path / 'cases.db'}", tmp_path / "cap", tick_s=3600.0),
                           settings).start(consume_alerts=True)
    try:
        for _ in range(300):
            status, board = await h.call("city-head", "GET", "")
            if len(board) == 2:
                break
            await asyncio.sleep(0.2)
        assert sorted((c["department"], c["dispatch_unit"], c["state"]) for c in board) == [
            ("traffic", "310115", "dispatched"), ("water", "310101", "dispatched")]
    finally:
        await h.close()
    # a restart reads on from the committed offsets; a re-sent event is applied once
    resolved = alert_event(severity="red", state="resolved", alert_id=events[0].alert_id, at=T0 + 900)
    await produce(kafka.settings, TOPIC_ALERTS, [(events[0].alert_id.encode(), to_json(events[0])),
                                                 (resolved.alert_id.encode(), to_json(resolved))])
    h = await CasesHarness(cases_config(f"sqlite:///{tmp_path / 'cases.db'}", tmp_path / "cap", tick_s=3600.0),
                           settings).start(consume_alerts=True)
    try:
        water = next(c for c in h.service.store.list_cases() if c["department"] == "water")
        for _ in range(300):
            linked = h.service.store.alerts_of(water["id"])
            if len(linked) >= 2:
                break
            await asyncio.sleep(0.2)
        assert [a["state"] for a in linked] == ["firing", "resolved"]
        assert len(h.service.store.list_cases()) == 2
    finally:
        await h.close()
