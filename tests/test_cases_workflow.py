"""Cases over HTTP on a real service, on SQLite and on PostgreSQL: the workflow, 409s, roles, visibility."""

from __future__ import annotations

import pytest
from prometheus_client import REGISTRY

from tests.cases_helpers import DATABASES, database_url, harness, pg_server  # noqa: F401 - fixtures

BUND = {"lat": 31.2410, "lon": 121.4850}   # inside the Bund grid 310101002-01


async def _citizen_case(h, who: str = "hp-super") -> dict:
    status, case = await h.call(who, "POST", "", {
        "title": "井盖缺失 missing manhole cover", "category": "E-0101", "source": "citizen",
        "reporter": "12345 hotline", "description": "Zhongshan Rd E1 near No. 18", **BUND})
    assert status == 201, case
    return case


def _actions_done(*actions: str) -> dict[str, float]:
    """``cityeye_case_actions_total`` per action, as this process's metrics server would show it."""
    return {a: REGISTRY.get_sample_value("cityeye_case_actions_total", {"action": a}) or 0.0 for a in actions}


async def test_a_case_through_every_stage(harness):
    h = harness
    counted = _actions_done("file", "reject", "close")
    case = await _citizen_case(h)
    code = case["code"]
    assert (case["state"], case["unit"], case["district"], case["source"]) == ("filed", "310101002-01", "310101",
                                                                               "citizen")
    assert case["department"] == "citymgmt" and case["stage"] == "dispatch"
    h.now += 60
    case = await h.ok("hp-disp", code, "dispatch", department="citymgmt")
    assert case["state"] == "dispatched" and case["dispatch_unit"] == "310101002-01"   # lowest level it serves
    h.now += 120
    assert (await h.ok("citymgmt-wt", code, "accept"))["state"] == "accepted"
    h.now += 600
    assert (await h.ok("citymgmt-wt", code, "arrive"))["state"] == "on_site"
    h.now += 1200
    case = await h.ok("citymgmt-wt", code, "report", report="cover replaced",
                      evidence=["https://photos.city.example/c1/after.jpg"])
    assert case["state"] == "handled"
    h.now += 300
    case = await h.ok("hp-super", code, "reject", reason="cover rocks: not seated")
    assert (case["state"], case["reopens"]) == ("on_site", 1)
    h.now += 300
    await h.ok("citymgmt-wt", code, "report", report="re-seated", evidence=["https://photos.city.example/c1/2.jpg"])
    h.now += 300
    assert (await h.ok("hp-super", code, "verify", evidence=["https://photos.city.example/c1/check.jpg"]))[
        "state"] == "verified"
    h.now += 60
    closed = await h.ok("hp-disp", code, "close")
    assert closed["state"] == "closed" and closed["closed_at"] == h.now and closed["deadline_at"] is None

    status, detail = await h.call("hp-super", "GET", f"/{code}")
    assert status == 200
    steps = [(e["action"], e["actor"], e["to_state"]) for e in detail["timeline"]]
    assert steps == [
        ("file", "hp-super", "filed"), ("dispatch", "hp-disp", "dispatched"), ("accept", "citymgmt-wt", "accepted"),
        ("arrive", "citymgmt-wt", "on_site"), ("report", "citymgmt-wt", "handled"),
        ("reject", "hp-super", "on_site"), ("report", "citymgmt-wt", "handled"), ("verify", "hp-super", "verified"),
        ("close", "hp-disp", "closed")]
    report = detail["timeline"][4]
    assert report["report"] == "cover replaced" and report["evidence"] == ["https://photos.city.example/c1/after.jpg"]
    assert detail["timeline"][5]["reason"] == "cover rocks: not seated"
    accept = detail["timeline"][2]
    assert accept["stage"] == "accept" and accept["stage_seconds"] == 120 and accept["on_time"] is True
    assert _actions_done("file", "reject", "close") == {a: n + 1 for a, n in counted.items()}  # the metrics


async def test_return_goes_back_to_the_dispatcher_and_suspend_resume(harness):
    h = harness
    code = (await _citizen_case(h))["code"]
    await h.ok("hp-disp", code, "dispatch", department="citymgmt")
    status, answer = await h.act("citymgmt-wt", code, "return")
    assert status == 400 and "reason" in answer["error"]
    case = await h.ok("citymgmt-wt", code, "return", reason="a water main leak: not ours")
    assert (case["state"], case["returns"], case["stage"]) == ("returned", 1, "dispatch")
    case = await h.ok("hp-disp", code, "dispatch", department="water")
    assert (case["state"], case["department"], case["dispatch_unit"]) == ("dispatched", "water", "310101")
    status, answer = await h.act("hp-disp", code, "suspend", reason="x")
    assert status == 403 and "head_of_shift" in answer["error"]
    case = await h.ok("city-head", code, "suspend", reason="需要跨区协调 needs a city decision")
    assert (case["state"], case["deadline_at"]) == ("suspended", None)
    case = await h.ok("city-head", code, "resume")
    assert case["state"] == "dispatched" and case["deadline_at"] > h.now


async def test_illegal_transitions_are_409_and_roles_403(harness):
    h = harness
    code = (await _citizen_case(h))["code"]
    counted = _actions_done("close", "dispatch", "verify")
    status, answer = await h.act("hp-disp", code, "close")
    assert status == 409
    assert answer["error"] == f"case {code} is 'filed': 'close' needs state verified"
    status, answer = await h.act("hp-super", code, "dispatch", department="citymgmt")
    assert status == 403 and "dispatcher" in answer["error"]
    await h.ok("hp-disp", code, "dispatch", department="citymgmt")
    status, answer = await h.act("hp-disp", code, "dispatch", department="citymgmt")
    assert status == 409 and "'dispatched'" in answer["error"]
    # another department's handler does not even see the case
    status, answer = await h.act("water-hp", code, "accept")
    assert status == 404
    status, answer = await h.act("citymgmt-wt", code, "verify")
    assert status == 403
    status, answer = await h.act("citymgmt-wt", code, "fly")
    assert status == 400 and "unknown action" in answer["error"]
    status, answer = await h.call(None, "GET", "")
    assert status == 401
    status, answer = await h.sign_in("hp-disp", "wrong password!!")
    assert status == 401 and "wrong username or password" == answer["error"]
    status, answer = await h.sign_in("nobody", "wrong password!!")
    assert status == 401 and "wrong username or password" == answer["error"]
    # nothing of the refused actions reached the timeline
    status, detail = await h.call("hp-super", "GET", f"/{code}")
    assert [e["action"] for e in detail["timeline"]] == ["file", "dispatch"]
    assert _actions_done("close", "dispatch", "verify") == {**counted, "dispatch": counted["dispatch"] + 1}


async def test_board_per_role_overdue_first_and_handlers_see_their_department(harness):
    h = harness
    first = (await _citizen_case(h))["code"]
    second = (await _citizen_case(h))["code"]
    await h.ok("hp-disp", first, "dispatch", department="citymgmt")
    await h.ok("hp-disp", second, "dispatch", department="water")
    h.now += 3000    # normal tier: accept within 1 h, nothing overdue yet
    status, board = await h.call("hp-disp", "GET", "")
    assert [c["code"] for c in board] == [first, second] and not any(c["overdue"] for c in board)
    await h.ok("water-hp", second, "accept")   # the second's deadline moves on (arrive: 2 h)
    h.now += 700     # the first is overdue now
    status, board = await h.call("hp-disp", "GET", "")
    assert [(c["code"], c["overdue"]) for c in board] == [(first, True), (second, False)]
    status, board = await h.call("water-hp", "GET", "")
    assert [c["code"] for c in board] == [second] and board[0]["actions"] == ["arrive", "note"]
    status, board = await h.call("traffic-ja", "GET", "")
    assert board == []
    status, board = await h.call("pd-super", "GET", "")    # Pudong's supervisor sees none of Huangpu's
    assert board == []
    status, board = await h.call("city-head", "GET", "?overdue=1")
    assert [c["code"] for c in board] == [first]
    status, me = await h.call("water-hp", "GET", "/me")
    assert (me["role"], me["department"], me["level"]) == ("handler", "water", "district")
