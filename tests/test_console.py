"""The duty officers' console: the real page in headless Chromium against a real dispatcher API.

The dispatcher's aiohttp app (``alerts.web.api.create_app``, which serves the
console) runs on a free loopback port over an :class:`~alerts.pipeline.dispatch_engine.Engine`
fed with a few alert events; the browser is Debian's ``chromium`` driven by
Playwright (``scripts/bootstrap`` installs it). Effects of clicks are checked
through the JSON API, not only on the page.
"""

from __future__ import annotations

import asyncio
import re
import time
from pathlib import Path
from typing import Any, Callable

import aiohttp
import pytest
from aiohttp import web
from playwright.async_api import Browser, Page, async_playwright, expect

from alerts.runtime.device_health import DeviceHealthView
from alerts.web.api import create_app
from alerts.web.console import CONSOLE_CSP, console_files
from alerts.pipeline.dispatch_engine import Engine
from alerts.runtime.store import Store
from cityeye.device_health import DeviceHealth
from tests.alerting_helpers import config, event

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking"]
TOKEN = "console-test-token-7f3a"
READ_TOKEN = "console-read-only-token-41c9"
OFFICER = "李明"
#: the seeded alerts, in the order they are applied (not the severity order)
SEEDED = [
    ("tr-mh-003", "yellow", "minhang", "traffic", "jam", "虹梅路高架"),
    ("ws-jd-010", "blue", "jiading", "weather", "wind", "嘉定气象站"),
    ("wl-pd-001", "red", "pudong", "water_level", "level_warning", "张家浜水位站"),
    ("wl-hp-002", "orange", "huangpu", "water_level", "level_warning", "苏州河水位站"),
]
NAMES = {sensor: name for sensor, *_, name in SEEDED}
#: Chromium logs refused API calls as console errors; the tests provoke 401, 409, 422 and an outage
EXPECTED_HTTP_ERRORS = re.compile(
    r"^Failed to load resource: (the server responded with a status of 4(01|03|09|22) |net::ERR_CONNECTION_REFUSED$)")


class Dispatcher:
    """The API app over ``engine`` on a loopback port, plus a JSON client for checking its answers."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self.devices = DeviceHealthView()
        self.port = 0
        self.runner: web.AppRunner | None = None
        self.http: aiohttp.ClientSession | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    async def start(self) -> None:
        """Serve (again, on the same port after :meth:`stop`)."""
        self.runner = web.AppRunner(create_app(self.engine, self.engine.cfg.api, devices=self.devices), access_log=None)
        await self.runner.setup()
        await web.TCPSite(self.runner, "127.0.0.1", self.port).start()
        self.port = self.runner.addresses[0][1]

    async def stop(self) -> None:
        """Stop listening and close every connection (as a dispatcher that went down)."""
        await self.runner.cleanup()

    def alert_id(self, sensor: str) -> str:
        return next(a.alert_id for a in self.engine.active.values() if a.sensor_id == sensor)

    async def get(self, path: str) -> Any:
        async with self.http.get(self.url + path) as response:
            assert response.status == 200, await response.text()
            return await response.json()

    async def wait_for(self, path: str, predicate: Callable[[Any], bool], timeout: float = 10.0) -> Any:
        """Poll ``path`` until ``predicate(body)``; fail with the last body after ``timeout``."""
        deadline = time.monotonic() + timeout
        while True:
            body = await self.get(path)
            if predicate(body):
                return body
            if time.monotonic() > deadline:
                raise AssertionError(f"{path} never met the condition; last answer: {body}")
            await asyncio.sleep(0.05)


def seed_event(sensor: str, severity: str, district: str, kind: str, rule: str, name: str, started: float):
    return event(sensor, severity=severity, district=district, kind=kind, rule=rule, started_at=started,
                 updated_at=started, sensor_name=name)


@pytest.fixture
async def dispatcher(tmp_path):
    engine = Engine(config(api={"token": TOKEN, "read_tokens": [READ_TOKEN]}), Store(tmp_path / "dispatcher.sqlite"))
    now = time.time()
    with engine.store.transaction():
        for i, spec in enumerate(SEEDED):
            engine.apply_event(seed_event(*spec, started=now - 600 + 60 * i), now)
    server = Dispatcher(engine)
    await server.start()
    async with aiohttp.ClientSession(headers={"Authorization": f"Bearer {TOKEN}"}) as server.http:
        yield server
    await server.stop()


@pytest.fixture
async def browser():
    if not CHROMIUM.exists():
        pytest.fail(f"{CHROMIUM} is missing: the console tests need Debian's chromium "
                    "(scripts/bootstrap installs it, or: apt-get install -y chromium)")
    playwright = await async_playwright().start()
    try:
        instance = await playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        yield instance
        await instance.close()
    finally:
        await playwright.stop()


@pytest.fixture
async def page(browser: Browser, dispatcher: Dispatcher):
    """A console page; at the end no script error happened and the token never showed up."""
    context = await browser.new_context(locale="zh-CN", timezone_id="Asia/Shanghai")
    tab = await context.new_page()
    tab.set_default_timeout(10_000)
    problems: list[str] = []
    seen_urls: list[str] = []
    tab.on("pageerror", lambda exc: problems.append(f"page error: {exc}"))
    tab.on("console", lambda msg: problems.append(f"console {msg.type}: {msg.text}")
           if msg.type == "error" and not EXPECTED_HTTP_ERRORS.search(msg.text) else None)
    tab.on("request", lambda request: seen_urls.append(request.url))
    yield tab
    assert not problems, problems
    assert not [u for u in seen_urls if TOKEN in u or READ_TOKEN in u], "the token went into a URL"
    await context.close()


async def open_console(page: Page, dispatcher: Dispatcher, token: str = TOKEN) -> None:
    """The console signed in with ``token`` (reading needs a token too), showing the seeded alerts."""
    await page.goto(dispatcher.url + "/")
    assert page.url == dispatcher.url + "/console/"
    await sign_in(page, token)
    await expect(page.locator("#alerts-body tr")).to_have_count(len(SEEDED))


async def sign_in(page: Page, token: str = TOKEN, name: str = OFFICER) -> None:
    await page.get_by_label("值班员姓名 Officer name").fill(name)
    await page.get_by_label("接口令牌 API token").fill(token)
    await page.get_by_role("button", name="保存 Save", exact=True).click()
    await expect(page.locator("#token-state")).to_contain_text("Token set")


async def select(page: Page, sensor: str) -> None:
    await page.get_by_role("button", name=f"查看详情 Show details: {NAMES[sensor]}（{sensor}）").click()
    await expect(page.locator("#detail-title")).to_contain_text(sensor)


def row(page: Page, dispatcher: Dispatcher, sensor: str):
    return page.locator(f'#alerts-body tr[data-alert-id="{dispatcher.alert_id(sensor)}"]')


async def test_console_is_served_with_content_types_and_a_strict_csp(dispatcher):
    async with dispatcher.http.get(dispatcher.url + "/", allow_redirects=False) as r:
        assert r.status == 302 and r.headers["Location"] == "/console/"
    files = console_files()
    assert {"index.html", "console.js", "api.js", "alerts.js", "console.css"} <= set(files)
    assert "__init__.py" not in files
    expected_types = {".html": "text/html", ".js": "text/javascript", ".css": "text/css"}
    for name, (content, _) in files.items():
        for path in [f"/console/{name}"] + (["/console/", "/console"] if name == "index.html" else []):
            async with dispatcher.http.get(dispatcher.url + path) as r:
                assert r.status == 200 and r.charset == "utf-8", path
                assert r.content_type == expected_types[Path(name).suffix], path
                assert r.headers["Content-Security-Policy"] == CONSOLE_CSP
                assert r.headers["X-Content-Type-Options"] == "nosniff"
                assert await r.read() == content
    assert "script-src 'self'" in CONSOLE_CSP and "unsafe-inline" not in CONSOLE_CSP
    for missing in ("/console/__init__.py", "/console/../api.py", "/console/nope.js"):
        async with dispatcher.http.get(dispatcher.url + missing) as r:
            assert r.status == 404 and "error" in await r.json()
    body = await dispatcher.get("/api/v1/alerts")
    assert body["total"] == len(SEEDED)


async def test_table_lists_alerts_by_severity_with_text_labels_and_filters(page, dispatcher):
    await open_console(page, dispatcher)
    rows = page.locator("#alerts-body tr")
    assert await rows.evaluate_all("rows => rows.map(r => r.dataset.severity)") == ["red", "orange", "yellow", "blue"]
    texts = await page.locator("#alerts-body td.severity").all_inner_texts()
    assert [t.split()[0] for t in texts] == ["红色", "橙色", "黄色", "蓝色"]
    first = rows.first
    await expect(first.locator("td.sensor")).to_contain_text("张家浜水位站")
    await expect(first.locator("td.sensor")).to_contain_text("wl-pd-001")
    await expect(first.locator("td.district")).to_have_text("pudong")
    await expect(first.locator("td.kind")).to_contain_text("水位")
    await expect(first.locator("td.status-cell")).to_contain_text("未处理 Active")
    await expect(first.locator("td.num")).to_have_text("5 / 4")

    hostile = '<img src=x onerror="document.title=1">'
    with dispatcher.engine.store.transaction():
        dispatcher.engine.apply_event(seed_event("wx-bad-1", "blue", "jiading", "weather", "wind", hostile,
                                                 time.time() - 3600), time.time())
    await page.get_by_role("button", name="刷新 Refresh").click()
    await expect(rows).to_have_count(len(SEEDED) + 1)
    await expect(rows.last.locator("td.sensor button")).to_have_text(hostile)  # shown as text, not markup
    assert await page.locator("#alerts-body img").count() == 0

    await page.get_by_label("级别 Severity").select_option("orange")
    await expect(rows).to_have_count(1)
    await expect(rows.first).to_have_attribute("data-severity", "orange")
    await page.get_by_label("级别 Severity").select_option("")
    await page.get_by_label("区 District").select_option("minhang")
    await expect(rows).to_have_count(1)
    await expect(rows.first.locator("td.sensor")).to_contain_text("tr-mh-003")


async def test_the_console_asks_for_a_token_before_showing_alerts(page, dispatcher):
    await page.goto(dispatcher.url + "/console/")
    await expect(page.locator("#message")).to_contain_text("需要令牌 Token needed")
    await expect(page.locator("#token-state")).to_contain_text("No token set")
    assert await page.locator("#alerts-body tr").count() == 0
    await sign_in(page, token=READ_TOKEN)
    await expect(page.locator("#alerts-body tr")).to_have_count(len(SEEDED))
    await expect(page.locator("#message")).to_have_text("已保存 Saved")  # the refusal is gone


async def test_acknowledge_from_the_console(page, dispatcher):
    await open_console(page, dispatcher)
    await sign_in(page)
    await select(page, "wl-hp-002")
    await page.get_by_label("备注 / 说明 Comment or note").fill("已通知泵站")
    await page.get_by_role("button", name="确认 Acknowledge", exact=True).click()

    aid = dispatcher.alert_id("wl-hp-002")
    got = await dispatcher.wait_for(f"/api/v1/alerts/{aid}", lambda a: a["status"] == "acknowledged")
    assert got["acknowledged_by"] == OFFICER
    assert (got["timeline"][-1]["action"], got["timeline"][-1]["detail"]) == ("acknowledged", "已通知泵站")
    await expect(row(page, dispatcher, "wl-hp-002").locator("td.status-cell")).to_contain_text("已确认 Acknowledged")
    await expect(page.locator("#message")).to_contain_text("已确认 Acknowledged")
    await expect(page.locator("#detail-timeline li").first).to_contain_text(OFFICER)
    await expect(page.get_by_role("button", name="确认 Acknowledge", exact=True)).to_be_disabled()
    other = await dispatcher.get(f"/api/v1/alerts/{dispatcher.alert_id('wl-pd-001')}")
    assert other["status"] == "active"

    assert await page.evaluate("localStorage.getItem('cityeye.console.officer')") == OFFICER
    assert await page.evaluate("sessionStorage.getItem('cityeye.console.token')") == TOKEN
    assert TOKEN not in await page.evaluate("JSON.stringify(localStorage)")
    assert await page.get_by_label("接口令牌 API token").input_value() == ""
    assert TOKEN not in page.url and TOKEN not in await page.content()


async def test_missing_or_wrong_token_or_a_conflict_shows_the_error(page, dispatcher):
    await page.clock.install()  # no auto-refresh: the page shows only what the clicks did
    await open_console(page, dispatcher, token=READ_TOKEN)
    await select(page, "wl-pd-001")
    message = page.locator("#message")
    await page.get_by_role("button", name="确认 Acknowledge", exact=True).click()
    await expect(message).to_contain_text("此令牌只读 This token may only read")
    await page.get_by_role("button", name="清除令牌 Forget token").click()
    await page.get_by_role("button", name="确认 Acknowledge", exact=True).click()
    await expect(message).to_contain_text("需要令牌 Token needed")
    await expect(page.get_by_label("接口令牌 API token")).to_be_focused()

    await sign_in(page, token="not-the-token")
    await page.get_by_role("button", name="确认 Acknowledge", exact=True).click()
    await expect(message).to_contain_text("需要令牌 Token needed")
    await expect(message).to_contain_text("missing or wrong bearer token")
    await expect(message).to_have_class("message error")
    aid = dispatcher.alert_id("wl-pd-001")
    assert (await dispatcher.get(f"/api/v1/alerts/{aid}"))["acknowledged_by"] is None
    await expect(row(page, dispatcher, "wl-pd-001").locator("td.status-cell")).to_contain_text("未处理 Active")
    await expect(page.get_by_role("button", name="确认 Acknowledge", exact=True)).to_be_enabled()

    await page.evaluate("document.getElementById('refresh-state').textContent = ''")
    await sign_in(page)
    # saving the token refreshes the page: let that finish before the other officer acts, or the
    # refresh may already show the alert acknowledged (seen under load)
    await expect(page.locator("#refresh-state")).to_contain_text("Updated")
    with dispatcher.engine.store.transaction():  # another officer was quicker
        dispatcher.engine.acknowledge(aid, "王芳", time.time())
    await page.get_by_role("button", name="确认 Acknowledge", exact=True).click()
    await expect(message).to_contain_text("当前状态不允许此操作 Not possible in the alert's current state")
    await expect(message).to_contain_text("already acknowledged by 王芳")
    await expect(page.locator("#detail-fields")).to_contain_text("王芳")  # the pane shows the alert as it is now
    await expect(row(page, dispatcher, "wl-pd-001").locator("td.status-cell")).to_contain_text("已确认 Acknowledged")


async def test_assign_comment_and_resolve_show_in_the_timeline(page, dispatcher):
    await open_console(page, dispatcher)
    await sign_in(page)
    await select(page, "tr-mh-003")
    aid = dispatcher.alert_id("tr-mh-003")
    await page.get_by_label("指派给 Assign to").fill("交警三中队")
    await page.get_by_role("button", name="指派 Assign", exact=True).click()
    await expect(row(page, dispatcher, "tr-mh-003").locator("td.assignee")).to_have_text("交警三中队")

    questions: list[str] = []

    def answer(accept: bool):
        def handle(dialog):
            questions.append(dialog.message)
            return dialog.accept() if accept else dialog.dismiss()
        return handle

    page.once("dialog", answer(False))  # "resolve?" -- no: nothing is sent
    await page.get_by_role("button", name="解除 Resolve", exact=True).click()
    await page.get_by_role("button", name="添加备注 Comment", exact=True).click()
    await expect(page.locator("#message")).to_contain_text("请先填写备注 Write the comment first")
    await page.get_by_label("备注 / 说明 Comment or note").fill("现场疏导中")
    await page.get_by_role("button", name="添加备注 Comment", exact=True).click()
    await expect(page.locator("#detail-timeline li").first).to_contain_text("现场疏导中")
    page.once("dialog", answer(True))
    await page.get_by_role("button", name="解除 Resolve", exact=True).click()
    got = await dispatcher.wait_for(f"/api/v1/alerts/{aid}", lambda a: a["state"] == "resolved")
    assert len(questions) == 2 and all("tr-mh-003" in q and "Resolve" in q for q in questions)
    assert [(e["action"], e["actor"]) for e in got["timeline"]] == [
        ("raised", "system"), ("assigned", OFFICER), ("commented", OFFICER), ("resolved", OFFICER)]
    assert got["assignee"] == "交警三中队"
    await expect(page.locator("#detail-fields")).to_contain_text("已解除 Resolved")
    await expect(page.get_by_role("button", name="解除 Resolve", exact=True)).to_be_disabled()
    # the resolved alert leaves the default (firing) view
    await expect(page.locator("#alerts-body tr")).to_have_count(len(SEEDED) - 1)


async def test_auto_refresh_shows_new_alerts_and_keeps_the_selection(page, dispatcher):
    await page.clock.install()
    await open_console(page, dispatcher)
    open_button = page.get_by_role("button", name=f"查看详情 Show details: {NAMES['wl-hp-002']}（wl-hp-002）")
    await open_button.focus()
    await page.keyboard.press("Enter")  # keyboard only
    await expect(page.locator("#detail-title")).to_contain_text("wl-hp-002")
    now = time.time()
    with dispatcher.engine.store.transaction():
        dispatcher.engine.apply_event(
            seed_event("wl-pd-009", "red", "pudong", "water_level", "level_warning", "川杨河水位站", now), now)
    await page.clock.run_for(6000)
    rows = page.locator("#alerts-body tr")
    await expect(rows).to_have_count(len(SEEDED) + 1)
    await expect(rows.first.locator("td.sensor")).to_contain_text("wl-pd-009")
    selected = page.locator("#alerts-body tr.selected")
    await expect(selected).to_have_count(1)
    await expect(selected).to_have_attribute("data-alert-id", dispatcher.alert_id("wl-hp-002"))
    await expect(page.locator("#detail-title")).to_contain_text("wl-hp-002")
    await expect(open_button).to_be_focused()  # the re-rendered row's button has the focus back


async def test_create_and_expire_a_silence_from_the_console(page, dispatcher):
    await open_console(page, dispatcher)
    await sign_in(page)
    await select(page, "wl-pd-001")
    await page.get_by_role("button", name="静默此告警… Silence this alert…").click()
    matchers = page.get_by_label("匹配条件（每行一条） Matchers, one per line")
    await expect(matchers).to_have_value("sensor=wl-pd-001\nrule=level_warning")
    await matchers.fill("district=pudong\nseverity=~orange|red")
    await page.get_by_label("时长 Duration").select_option("4h")
    await page.get_by_label("原因 Reason (comment)").fill("泵站检修 pump maintenance")
    await page.get_by_role("button", name="创建静默 Create silence").click()

    body = await dispatcher.wait_for("/api/v1/silences", lambda b: len(b["silences"]) == 1)
    silence = body["silences"][0]
    assert silence["state"] == "active" and silence["created_by"] == OFFICER
    assert silence["comment"] == "泵站检修 pump maintenance"
    assert [(m["label"], m["op"], m["value"]) for m in silence["matchers"]] == [
        ("district", "=", "pudong"), ("severity", "=~", "orange|red")]
    assert silence["ends_at"] - silence["starts_at"] == 4 * 3600
    assert (await dispatcher.get(f"/api/v1/alerts/{dispatcher.alert_id('wl-pd-001')}"))["status"] == "silenced"
    silence_row = page.locator(f'#silences-body tr[data-silence-id="{silence["id"]}"]')
    await expect(silence_row).to_contain_text("生效中 Active")
    await expect(silence_row).to_contain_text("district=pudong, severity=~orange|red")

    await silence_row.get_by_role("button", name="使失效 Expire").click()
    await dispatcher.wait_for("/api/v1/silences", lambda b: b["silences"][0]["state"] == "expired")
    await expect(silence_row).to_contain_text("已失效 Expired")

    await page.get_by_label("匹配条件（每行一条） Matchers, one per line").fill("district~pudong")
    await page.get_by_label("原因 Reason (comment)").fill("typo")
    await page.get_by_role("button", name="创建静默 Create silence").click()
    await expect(page.locator("#message")).to_contain_text("输入有误 Invalid input")
    await expect(page.locator("#message")).to_contain_text("matchers")
    assert len((await dispatcher.get("/api/v1/silences"))["silences"]) == 1


async def test_an_unreachable_dispatcher_is_shown_and_the_console_recovers(page, dispatcher):
    await page.clock.install()
    await open_console(page, dispatcher)
    await dispatcher.stop()
    await page.clock.run_for(6000)
    await expect(page.locator("#message")).to_contain_text("无法连接调度服务 Cannot reach the dispatcher")
    await expect(page.locator("#refresh-state")).to_have_text("刷新失败 Refresh failed")
    await expect(page.locator("#alerts-body tr")).to_have_count(len(SEEDED))  # what was shown stays

    await dispatcher.start()
    await page.clock.run_for(6000)
    await expect(page.locator("#message")).to_be_hidden()
    await expect(page.locator("#refresh-state")).to_contain_text("更新于 Updated")


async def test_the_devices_view_lists_device_health_problems_first_as_text(page, dispatcher):
    now = time.time()
    base = dict(kind="water_level", district="pudong", last_reading_at=now - 5, messages=120, readings=118,
                dead_letters=2, rate_limited=0, message_rate_per_s=0.1, dead_letter_rate_per_s=0.0,
                last_reason=None, last_reason_at=None, updated_at=now, gateway="gw")
    for record in (
        DeviceHealth(sensor_id="wl-pd-001", last_seen=now - 5, **base),
        DeviceHealth(sensor_id="wl-pd-002", last_seen=None, **base),
        DeviceHealth(sensor_id="wl-pd-003", last_seen=now - 1, **{
            **base, "dead_letter_rate_per_s": 0.5, "last_reading_at": now - 900,
            "last_reason": "out_of_range: level_m=612 outside [-50, 500] <b>x</b>", "last_reason_at": now - 1}),
    ):
        dispatcher.devices.devices[record.sensor_id] = record
    await open_console(page, dispatcher)
    await page.get_by_role("button", name="设备 Devices").click()
    rows = page.locator("#devices-body tr")
    await expect(rows).to_have_count(3)
    # problems first: rejecting and silent before ok; each status as text, not only a colour
    assert [await r.get_attribute("data-sensor-id") for r in await rows.all()] == ["wl-pd-003", "wl-pd-002",
                                                                                    "wl-pd-001"]
    await expect(rows.nth(0)).to_contain_text("拒收中 Rejecting")
    await expect(rows.nth(0).locator("td.reason")).to_contain_text("level_m=612 outside [-50, 500] <b>x</b>")
    await expect(rows.nth(1)).to_contain_text("无数据 Silent")
    await expect(rows.nth(2)).to_contain_text("正常 OK")
    await expect(rows.nth(2)).to_contain_text("120 / 118 / 2 / 0")
    await expect(page.get_by_role("rowheader", name="wl-pd-001")).to_have_count(1)
    await page.get_by_label("状态 Status", exact=True).select_option("silent")
    await expect(rows).to_have_count(1)
    await expect(rows.nth(0)).to_have_attribute("data-sensor-id", "wl-pd-002")
