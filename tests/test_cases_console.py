"""The cases console in headless Chromium against the real cases service: a case walked through every
stage by three signed-in roles (supervisor, dispatcher, handler), the board, the map, large type, and an
axe-core run (vendored in tests/vendor/axe-core) reporting no violations."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from playwright.async_api import Page, expect

from cases.web import CONSOLE_CSP
from cases.workflow import actions_for
from cityeye.contracts import to_json
from tests.cases_helpers import CasesHarness, PASSWORD, T0, alert_event, cases_config
from tests.test_console import browser  # noqa: F401 - the Chromium fixture

from cases.sla import SlaConfig
from cityeye.config import InfluxSettings, Settings

AXE = Path(__file__).resolve().parent / "vendor" / "axe-core" / "axe.min.js"
#: Chromium logs refused API calls (the test provokes a 409) and the 401 of a signed-out poll
EXPECTED_HTTP_ERRORS = re.compile(r"^Failed to load resource: the server responded with a status of 4(01|09)")
#: the state names the case facts show, back to their codes
STATE_CODES = {"已立案 Filed": "filed", "已派遣 Dispatched": "dispatched", "已受理 Accepted": "accepted",
               "已退单 Returned": "returned", "已到场 On site": "on_site", "已处置 Handled": "handled",
               "已核查 Verified": "verified", "已结案 Closed": "closed", "已挂账 Suspended": "suspended"}


@pytest.fixture
async def service(tmp_path):
    h = await CasesHarness(cases_config(f"sqlite:///{tmp_path / 'cases.db'}", tmp_path / "cap", sla=SlaConfig()),
                           Settings(influx=InfluxSettings(enabled=False))).start()
    yield h
    await h.close()


@pytest.fixture
async def page(browser, service):  # noqa: F811 - the imported fixture
    # axe is injected as a script: the console's CSP (script-src 'self') is bypassed for that only
    context = await browser.new_context(locale="zh-CN", timezone_id="Asia/Shanghai", bypass_csp=True)
    tab = await context.new_page()
    tab.set_default_timeout(10_000)
    problems: list[str] = []
    tab.on("pageerror", lambda exc: problems.append(f"page error: {exc}"))
    tab.on("console", lambda msg: problems.append(f"console {msg.type}: {msg.text}")
           if msg.type == "error" and not EXPECTED_HTTP_ERRORS.search(msg.text) else None)
    await tab.goto(f"http://127.0.0.1:{service.service.port}/cases/")
    yield tab
    assert not problems, problems
    await context.close()


async def sign_in(page: Page, username: str) -> None:
    await page.get_by_label("用户名").fill(username)
    await page.get_by_label("密码").fill(PASSWORD)
    await page.get_by_role("button", name="登录 Sign in").click()
    await expect(page.locator("#who")).to_contain_text("·")
    await expect(page.locator("#status")).to_have_text(f"已登录 Signed in as {username}")


async def sign_out(page: Page) -> None:
    await page.get_by_role("button", name="退出 Sign out").click()
    await expect(page.get_by_label("用户名")).to_be_visible()
    await expect(page.locator("#detail")).to_be_hidden()               # the next person starts afresh
    assert await page.locator("#board tbody tr, #facts dd, #map svg").count() == 0


async def open_case(page: Page, code: str) -> None:
    await page.locator(f'#board button[data-case="{code}"]').click()
    await expect(page.locator("#detail-h")).to_contain_text(code)


async def offered(page: Page) -> list[str]:
    """The actions the console offers the signed-in person on the open case."""
    return await page.locator("#actions button").evaluate_all("buttons => buttons.map(b => b.dataset.action)")


async def do(page: Page, action_label: str, expected_state: str, **fields: str) -> None:
    """Fill the action form's fields (by label) and press the action's button."""
    for label, value in fields.items():
        field = page.get_by_label(label)
        if await field.evaluate("e => e.tagName") == "SELECT":
            await field.select_option(value)
        else:
            await field.fill(value)
    await page.locator("#actions").get_by_role("button", name=action_label).click()
    await expect(page.locator("#status")).to_contain_text(expected_state)
    await expect(page.locator("#facts dd").first).to_have_text(expected_state)


async def turn(page: Page, username: str, role: str, code: str, *steps: tuple[str, str, dict[str, str]]) -> None:
    """``username`` signs in, opens the case, sees only its role's actions, takes ``steps``, signs out."""
    await sign_in(page, username)
    await open_case(page, code)
    for label, state, fields in steps:
        current = STATE_CODES[await page.locator("#facts dd").first.text_content()]
        assert await offered(page) == actions_for(current, role), (username, current)
        await do(page, label, state, **fields)
    await sign_out(page)


async def axe_violations(page: Page) -> list[dict]:
    await page.add_script_tag(content=AXE.read_text(encoding="utf-8"))
    result = await page.evaluate("async () => (await axe.run(document)).violations")
    return [{"id": v["id"], "nodes": [n["target"] for n in v["nodes"]][:3]} for v in result]


async def test_console_is_served_with_a_strict_csp(service):
    async with service.http.get("/cases/") as r:
        assert r.status == 200 and r.headers["Content-Security-Policy"] == CONSOLE_CSP
        assert "城市运行工单" in await r.text()
    for name in ("console.js", "map.js"):
        async with service.http.get(f"/cases/static/{name}") as r:
            assert r.status == 200 and "javascript" in r.headers["Content-Type"]


async def test_sign_in_page_keyboard_skip_link_and_axe(page: Page):
    assert await axe_violations(page) == []
    await page.keyboard.press("Tab")
    skip = page.get_by_role("link", name="跳到主要内容 Skip to content")
    await expect(skip).to_be_focused()
    box = await skip.bounding_box()
    assert box is not None and box["x"] >= 0 and box["y"] >= 0          # shown on screen when focused
    assert await skip.evaluate("e => getComputedStyle(e).boxShadow") != "none"  # with a visible focus ring
    await page.keyboard.press("Enter")
    await expect(page.locator("#main")).to_be_focused()
    await page.keyboard.press("Tab")
    await expect(page.get_by_label("用户名")).to_be_focused()
    await page.keyboard.type("hp-disp")
    await page.keyboard.press("Tab")
    await page.keyboard.type("not the password")
    await page.keyboard.press("Enter")
    await expect(page.locator("#error")).to_contain_text("登录失败 Sign-in failed")
    await page.get_by_label("密码").fill(PASSWORD)
    await page.keyboard.press("Enter")
    await expect(page.locator("#board-h")).to_be_focused()             # focus lands on the board


async def test_a_case_through_every_stage_by_three_roles(page: Page, service):
    # the supervisor on patrol files a citizen's report in the Bund grid
    await sign_in(page, "hp-super")
    await page.get_by_label("标题 Title").fill("路面积水 standing water on Zhongshan Rd E1")
    await page.get_by_label("类别 Category").select_option("E-0701")
    await page.get_by_label("网格 Grid").select_option("310101002-01")
    await page.get_by_label("紧急程度 Urgency").select_option("high")
    await page.get_by_label("市民报告 Citizen report").check()
    await page.get_by_label("报告人 / 来源 Reporter").fill("12345 热线 hotline")
    await page.get_by_role("button", name="立案 File").click()
    await expect(page.locator("#status")).to_have_text("已立案 Filed C-000001")
    await expect(page.locator("#detail-h")).to_be_focused()
    # the map shows the grids and the active case, with its urgency as text, and the same as a list
    await expect(page.locator('#map polygon[data-unit="310101002-01"]')).to_have_class("unit-grid has-cases")
    await expect(page.locator('#map polygon[data-unit="310106013-01"]')).to_have_class("unit-grid")
    await expect(page.locator('#map g[data-case="C-000001"]')).to_contain_text("C-000001 较急")
    await expect(page.locator("#map desc")).to_contain_text("C-000001")
    await expect(page.locator('#map-list li[data-unit="310101002-01"]')).to_contain_text("C-000001 较急 High · 已立案 Filed")
    await expect(page.locator("#board tbody tr")).to_have_count(1)
    await expect(page.locator("#board tbody")).to_contain_text("较急 High")
    assert await offered(page) == actions_for("filed", "supervisor")    # no dispatch button for a supervisor
    assert await axe_violations(page) == []
    await sign_out(page)

    reason, report = "原因 Reason", "处置报告 / 备注 Report / note"
    # dispatched to city management, who return it (standing water is the water authority's) ...
    await turn(page, "hp-disp", "dispatcher", "C-000001",
               ("派遣 Dispatch", "已派遣 Dispatched", {"派遣部门 Department": "citymgmt"}))
    await turn(page, "citymgmt-wt", "handler", "C-000001",
               ("退单 Return", "已退单 Returned", {reason: "积水归水务 standing water is the water authority's"}))
    # ... re-dispatched to the water authority
    await turn(page, "hp-disp", "dispatcher", "C-000001",
               ("派遣 Dispatch", "已派遣 Dispatched", {"派遣部门 Department": "water"}))

    # the water authority's handler accepts with the keyboard only
    await sign_in(page, "water-hp")
    await page.locator('#board button[data-case="C-000001"]').focus()
    await page.keyboard.press("Enter")
    await expect(page.locator("#detail-h")).to_be_focused()
    await expect(page.locator("#facts")).to_contain_text("水务局")
    await expect(page.locator("#board-scope")).to_have_text("水务局：本部门的工单 your department's cases")
    await page.locator("#actions").get_by_role("button", name="受理 Accept").focus()
    await page.keyboard.press("Enter")
    await expect(page.locator("#status")).to_contain_text("已受理 Accepted")
    await expect(page.locator("#file")).to_be_hidden()                  # handlers do not file
    await sign_out(page)

    # the head of shift suspends it while the tide is high, and resumes it
    await turn(page, "city-head", "head_of_shift", "C-000001",
               ("挂账 Suspend", "已挂账 Suspended", {reason: "高潮位，待退潮 high tide, wait for the ebb"}),
               ("恢复 Resume", "已受理 Accepted", {}))
    status, _ = await service.act("water-hp", "C-000001", "close")       # a refused action in between
    assert status == 403
    photo = "https://photos.city.example/c1/after.jpg"
    await turn(page, "water-hp", "handler", "C-000001",
               ("到场 Arrive", "已到场 On site", {}),
               ("处置反馈 Report", "已处置 Handled", {report: "泵车抽排 pumping", "照片链接": photo}))
    # the supervisor finds water still standing: verification fails, back to handling
    await turn(page, "hp-super", "supervisor", "C-000001",
               ("核查不通过 Reject", "已到场 On site", {reason: "仍有积水 still 5 cm of water"}))
    await turn(page, "water-hp", "handler", "C-000001",
               ("处置反馈 Report", "已处置 Handled", {report: "泵车抽排完毕 pumped dry"}))
    await sign_in(page, "hp-super")
    await open_case(page, "C-000001")
    await expect(page.locator("#timeline")).to_contain_text(photo)
    await expect(page.locator("#timeline")).to_contain_text("仍有积水 still 5 cm of water")
    await do(page, "核查通过 Verify", "已核查 Verified")
    assert await axe_violations(page) == []
    await sign_out(page)

    # the dispatcher closes it; large type stays readable, and stays on after a reload
    await sign_in(page, "hp-disp")
    await open_case(page, "C-000001")
    await do(page, "结案 Close", "已结案 Closed")
    await expect(page.locator('#map g[data-case="C-000001"]')).to_have_count(0)   # no longer active
    await page.get_by_role("button", name="大字模式 Large type").click()
    await expect(page.get_by_role("button", name="大字模式 Large type")).to_have_attribute("aria-pressed", "true")
    assert await page.evaluate("getComputedStyle(document.documentElement).fontSize") == "22px"
    assert await axe_violations(page) == []
    await page.reload()
    await expect(page.locator("#status")).to_have_text("已登录 Signed in as hp-disp")
    await expect(page.get_by_role("button", name="大字模式 Large type")).to_have_attribute("aria-pressed", "true")
    assert await page.evaluate("getComputedStyle(document.documentElement).fontSize") == "22px"

    status, case = await service.call("hp-disp", "GET", "/C-000001")
    assert [(e["action"], e["actor"], e["to_state"]) for e in case["timeline"]] == [
        ("file", "hp-super", "filed"), ("dispatch", "hp-disp", "dispatched"), ("return", "citymgmt-wt", "returned"),
        ("dispatch", "hp-disp", "dispatched"), ("accept", "water-hp", "accepted"),
        ("suspend", "city-head", "suspended"), ("resume", "city-head", "accepted"),
        ("arrive", "water-hp", "on_site"), ("report", "water-hp", "handled"), ("reject", "hp-super", "on_site"),
        ("report", "water-hp", "handled"), ("verify", "hp-super", "verified"), ("close", "hp-disp", "closed")]
    assert case["source"] == "citizen" and case["dispatch_unit"] == "310101" and case["department"] == "water"
    assert (case["returns"], case["reopens"]) == (1, 1)


async def test_the_board_puts_overdue_first_and_the_map_opens_cases(page: Page, service):
    await service.call("hp-super", "POST", "", {"title": "井盖缺失 missing manhole cover", "category": "E-0101",
                                                "unit": "310101002-01", "urgency": "normal"})
    await service.call("pd-super", "POST", "", {"title": "路口积水 flooded crossing", "category": "E-0701",
                                                "unit": "310115007-01", "urgency": "urgent"})
    service.now += 20 * 60      # the urgent case had 10 minutes to be dispatched; the normal one has an hour
    await sign_in(page, "city-disp")
    await expect(page.locator("#board-scope")).to_contain_text("市级 City：本级及下级的工单 cases here and below")
    rows = page.locator("#board tbody tr")
    await expect(rows).to_have_count(2)
    await expect(rows.nth(0)).to_contain_text("C-000002")
    await expect(rows.nth(0)).to_contain_text("已超时 Overdue")
    await expect(rows.nth(0)).to_contain_text("紧急 Urgent")
    await expect(rows.nth(1)).to_contain_text("C-000001")
    await expect(rows.nth(1)).not_to_contain_text("已超时")
    # both grids are shaded on the map; the text version names them, their cases and the quiet grids
    await expect(page.locator("#map polygon.has-cases")).to_have_count(2)
    await expect(page.locator('#map-list li[data-unit="310115007-01"]')).to_contain_text("C-000002 紧急 Urgent")
    await expect(page.locator("#map-list")).to_contain_text("无在办工单的网格 Grids without active cases (3)")
    await page.locator('#map-list button[data-case="C-000002"]').focus()
    await page.keyboard.press("Enter")
    await expect(page.locator("#detail-h")).to_be_focused()
    await expect(page.locator("#detail-h")).to_contain_text("C-000002")
    await expect(page.locator("#facts")).to_contain_text("已超时 Overdue")
    await page.locator('#map g[data-case="C-000001"]').click()          # a mark opens its case too
    await expect(page.locator("#detail-h")).to_contain_text("C-000001")
    assert await axe_violations(page) == []


async def test_a_case_filed_by_alerts_shows_their_readings(page: Page, service):
    assert service.service.apply_alert(to_json(alert_event(severity="orange"))) == "filed"
    rise = alert_event(rule="water_level.rate_of_rise", severity="yellow", at=T0 + 60, value=5.45)
    assert service.service.apply_alert(to_json(rise)) == "linked"
    await sign_in(page, "water-hp")                                     # dispatched to the water authority at once
    await open_case(page, "C-000001")
    rows = page.locator("#alerts tbody tr")
    await expect(rows).to_have_count(2)
    for row, severity, value in ((rows.nth(0), "橙色 Orange", "5.3"), (rows.nth(1), "黄色 Yellow", "5.45")):
        await expect(row).to_contain_text("wl-huangpu-01")
        await expect(row.locator("td").nth(2)).to_have_text(severity)   # the colour's word beside the colour
        await expect(row.locator('td [lang="en"]').first).to_have_text(severity.split(" ")[1])
        await expect(row.locator("td").nth(3)).to_have_text(value)
        await expect(row.locator("td").nth(4)).to_have_text("5.2")
    await expect(page.locator("#timeline")).to_contain_text("告警 Alert firing")
    await expect(page.locator('#map-list li[data-unit="310101002-01"]')).to_contain_text("C-000001 紧急 Urgent")
    assert await offered(page) == actions_for("dispatched", "handler")
    assert await axe_violations(page) == []
    # the console's 10 s poll re-draws the case; the keyboard's place stays on the same button
    accept = page.locator('#actions button[data-action="accept"]')
    await accept.focus()
    await accept.evaluate("b => { b.dataset.before = 'poll' }")
    async with page.expect_response(lambda r: r.url.endswith("/api/v1/cases/C-000001"), timeout=15_000):
        pass
    await expect(page.locator('#actions button[data-action="accept"]:not([data-before])')).to_be_focused()


async def test_an_illegal_action_shows_the_server_s_message(page: Page, service):
    await sign_in(page, "hp-disp")
    status, case = await service.call("hp-super", "POST", "", {"title": "井盖 manhole", "category": "E-0101",
                                                               "unit": "310101002-01"})
    await page.get_by_label("只看我的 Mine only").check()
    await page.get_by_label("只看我的 Mine only").uncheck()
    await page.locator('#board button[data-case="C-000001"]').click()
    await service.ok("hp-disp", "C-000001", "dispatch", department="citymgmt")   # someone else was quicker
    await page.get_by_label("派遣部门 Department").select_option("citymgmt")
    await page.locator("#actions").get_by_role("button", name="派遣 Dispatch").click()
    await expect(page.locator("#error")).to_have_text(
        "派遣 Dispatch: case C-000001 is 'dispatched': 'dispatch' needs state filed or returned")
