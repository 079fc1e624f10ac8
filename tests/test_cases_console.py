"""The cases console in headless Chromium against the real cases service: a case walked through every
stage by three signed-in roles (supervisor, dispatcher, handler), the board, the map, large type, and an
axe-core run (vendored in tests/vendor/axe-core) reporting no violations."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from playwright.async_api import Page, expect

from cases.web import CONSOLE_CSP
from tests.cases_helpers import CasesHarness, PASSWORD, cases_config
from tests.test_console import browser  # noqa: F401 - the Chromium fixture

from cases.sla import SlaConfig
from cityeye.config import InfluxSettings, Settings

AXE = Path(__file__).resolve().parent / "vendor" / "axe-core" / "axe.min.js"
#: Chromium logs refused API calls (the test provokes a 409) and the 401 of a signed-out poll
EXPECTED_HTTP_ERRORS = re.compile(r"^Failed to load resource: the server responded with a status of 4(01|09)")


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


async def open_as(page: Page, username: str, code: str = "C-000001") -> None:
    """Sign in as ``username`` and open the case from the board."""
    await sign_in(page, username)
    await page.locator(f'#board button[data-case="{code}"]').click()
    await expect(page.locator("#detail-h")).to_contain_text(code)


async def do(page: Page, action_label: str, expected_state: str) -> None:
    await page.locator("#actions").get_by_role("button", name=action_label).click()
    await expect(page.locator("#status")).to_contain_text(expected_state)


async def turn(page: Page, username: str, action_label: str, expected_state: str, fields: dict[str, str] | None = None,
               department: str = "") -> None:
    """One person's turn: sign in, open the case, fill the labelled fields, do the action, sign out."""
    await open_as(page, username)
    if department:
        await page.get_by_label("派遣部门 Department").select_option(department)
    for label, value in (fields or {}).items():
        await page.get_by_label(label).fill(value)
    await do(page, action_label, expected_state)
    await sign_out(page)


async def axe_violations(page: Page) -> list[dict]:
    await page.add_script_tag(content=AXE.read_text(encoding="utf-8"))
    result = await page.evaluate("async () => (await axe.run(document)).violations")
    return [{"id": v["id"], "nodes": [n["target"] for n in v["nodes"]][:3]} for v in result]


async def test_console_is_served_with_a_strict_csp(service):
    async with service.http.get("/cases/") as r:
        assert r.status == 200 and r.headers["Content-Security-Policy"] == CONSOLE_CSP
        assert "城市运行工单" in await r.text()
    async with service.http.get("/cases/static/console.js") as r:
        assert r.status == 200 and "javascript" in r.headers["Content-Type"]


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
    # the map shows the grids and the active case, with its urgency as text
    await expect(page.locator('#map polygon[data-unit="310101002-01"]')).to_have_count(1)
    await expect(page.locator('#map g[data-case="C-000001"]')).to_contain_text("C-000001 较急")
    await expect(page.locator("#board tbody tr")).to_have_count(1)
    await expect(page.locator("#board tbody")).to_contain_text("较急 High")
    assert await axe_violations(page) == []
    # the supervisor may not dispatch: no such button for that role
    await expect(page.locator("#actions").get_by_role("button", name="派遣 Dispatch")).to_have_count(0)
    await sign_out(page)

    # the district dispatcher sends it to the water authority
    await turn(page, "hp-disp", "派遣 Dispatch", "已派遣 Dispatched", department="water")

    # the water authority's handler (keyboard only): accept, arrive, report with a photo
    await sign_in(page, "water-hp")
    await page.locator('#board button[data-case="C-000001"]').focus()
    await page.keyboard.press("Enter")
    await expect(page.locator("#detail-h")).to_be_focused()
    await do(page, "受理 Accept", "已受理 Accepted")
    await do(page, "到场 Arrive", "已到场 On site")
    status, _ = await service.act("water-hp", "C-000001", "close")       # a refused action in between
    assert status == 403
    await page.get_by_label("处置报告 / 备注 Report / note").fill("泵车抽排完毕 pumped dry")
    await page.get_by_label("照片链接").fill("https://photos.city.example/c1/after.jpg")
    await do(page, "处置反馈 Report", "已处置 Handled")
    await expect(page.locator("#timeline")).to_contain_text("https://photos.city.example/c1/after.jpg")
    await expect(page.locator("#facts")).to_contain_text("水务局")
    await expect(page.locator("#file")).to_be_hidden()                  # handlers do not file
    await sign_out(page)

    # the supervisor checks on site: not good enough, back to handling (a re-open) ...
    await turn(page, "hp-super", "核查不通过 Reject", "已到场 On site",
               {"原因 Reason": "仍有积水 still standing water at the kerb"})
    await turn(page, "water-hp", "处置反馈 Report", "已处置 Handled",
               {"处置报告 / 备注 Report / note": "路缘积水已清 kerb cleared"})
    # ... and then verifies
    await open_as(page, "hp-super")
    await do(page, "核查通过 Verify", "已核查 Verified")
    assert await axe_violations(page) == []
    await sign_out(page)

    # the dispatcher closes it; large type stays readable
    await open_as(page, "hp-disp")
    await do(page, "结案 Close", "已结案 Closed")
    await page.get_by_role("button", name="大字模式 Large type").click()
    await expect(page.get_by_role("button", name="大字模式 Large type")).to_have_attribute("aria-pressed", "true")
    assert await page.evaluate("getComputedStyle(document.documentElement).fontSize") == "22px"
    assert await axe_violations(page) == []

    status, case = await service.call("hp-disp", "GET", "/C-000001")
    assert [(e["action"], e["actor"]) for e in case["timeline"]] == [
        ("file", "hp-super"), ("dispatch", "hp-disp"), ("accept", "water-hp"), ("arrive", "water-hp"),
        ("report", "water-hp"), ("reject", "hp-super"), ("report", "water-hp"), ("verify", "hp-super"),
        ("close", "hp-disp")]
    assert case["reopens"] == 1
    assert case["source"] == "citizen" and case["dispatch_unit"] == "310101"


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
