// The cases console: sign in, the board (overdue first), a case's detail with its timeline, linked alerts
// and the actions of the signed-in role, the grids and active cases drawn from the org's GeoJSON as SVG.
// Plain JS, no framework, no external resource (works offline). Chinese first, English beside it.
"use strict";

const API = "/api/v1/cases";
const TZ = "Asia/Shanghai";
const STATES = {
  filed: "已立案 Filed", dispatched: "已派遣 Dispatched", accepted: "已受理 Accepted", returned: "已退单 Returned",
  on_site: "已到场 On site", handled: "已处置 Handled", verified: "已核查 Verified", closed: "已结案 Closed",
  suspended: "已挂账 Suspended",
};
const ACTIONS = {
  dispatch: "派遣 Dispatch", accept: "受理 Accept", return: "退单 Return", arrive: "到场 Arrive",
  report: "处置反馈 Report", verify: "核查通过 Verify", reject: "核查不通过 Reject", close: "结案 Close",
  suspend: "挂账 Suspend", resume: "恢复 Resume", note: "备注 Note", file: "立案 Filed",
  escalate: "超时升级 Escalated", remind: "即将超时 Reminder", alert_firing: "告警 Alert firing",
  alert_resolved: "告警解除 Alert resolved",
};
const URGENCY = { urgent: "紧急 Urgent", high: "较急 High", normal: "一般 Normal" };
const SEVERITY = { red: "红色 Red", orange: "橙色 Orange", yellow: "黄色 Yellow", blue: "蓝色 Blue" };
const LEVELS = {
  city: "市级 City", district: "区级 District", street: "街镇级 Street/town", grid: "网格 Grid", community: "社区 Community",
};
const ROLES = {
  duty_officer: "值班员 Duty officer", dispatcher: "派遣员 Dispatcher", handler: "处置人员 Handler",
  supervisor: "监督员 Supervisor", head_of_shift: "值班长 Head of shift",
};

const $ = (sel) => document.querySelector(sel);
let token = sessionStorage.getItem("cases-token") || "";
let me = null;
let org = null;
let current = null;

function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (k === "class") node.className = v; else if (k === "text") node.textContent = v; else node.setAttribute(k, v);
  }
  for (const child of children) node.append(child);
  return node;
}

function when(ts) {
  return ts ? new Date(ts * 1000).toLocaleString("zh-CN", { timeZone: TZ, hour12: false }) : "—";
}

function say(text) { $("#status").textContent = text; }
function fail(text) { $("#error").textContent = text; }

async function call(method, path, body) {
  const headers = { "Content-Type": "application/json" };
  if (token) headers.Authorization = `Bearer ${token}`;
  const response = await fetch(API + path, { method, headers, body: body ? JSON.stringify(body) : undefined });
  const data = response.status === 204 ? null : await response.json();
  if (response.status === 401 && path !== "/session") { signedOut(); }
  if (!response.ok) throw new Error(data && data.error ? data.error : `HTTP ${response.status}`);
  return data;
}

// "中文 English" as the Chinese, then the English marked lang="en" (screen readers switch voice)
function bilingual(text) {
  const cut = text.search(/ [A-Za-z]/);
  return cut < 0 ? [text] : [text.slice(0, cut + 1), el("span", { lang: "en", text: text.slice(cut + 1) })];
}

function badge(kind, key, labels) {
  return el("span", { class: `badge ${kind}-${key}` }, ...bilingual(labels[key] || key));
}

// -- signing in and out
async function signIn(event) {
  event.preventDefault();
  fail("");
  try {
    const answer = await call("POST", "/session", { username: $("#username").value, password: $("#password").value });
    token = answer.token;
    sessionStorage.setItem("cases-token", token);
    $("#password").value = "";
    await start();
  } catch (err) { fail(`登录失败 Sign-in failed: ${err.message}`); }
}

function signedOut() {
  token = ""; me = null; current = null;
  sessionStorage.removeItem("cases-token");
  $("#app").hidden = true; $("#signin").hidden = false; $("#signout").hidden = true; $("#who").textContent = "";
  // nothing of the last person's cases stays in the page for the next one at the same desk
  $("#detail").hidden = true;
  for (const sel of ["#detail-h", "#facts", "#actions", "#timeline", "#alerts tbody", "#board tbody", "#map", "#map-list"]) {
    $(sel).replaceChildren();
  }
}

async function signOut() {
  try { await call("DELETE", "/session"); } catch (err) { /* already gone */ }
  signedOut();
  say("已退出 Signed out");
  $("#username").focus();
}

async function start() {
  me = await call("GET", "/me");
  org = await call("GET", "/org");
  $("#who").textContent = `${me.name} · ${ROLES[me.role]} · ${me.unit_name}${me.department_name ? " · " + me.department_name : ""}`;
  $("#signin").hidden = true; $("#app").hidden = false; $("#signout").hidden = false;
  $("#board-scope").textContent = me.role === "handler"
    ? `${me.department_name}：本部门的工单 your department's cases`
    : `${me.unit_name} · ${LEVELS[me.level] || me.level}：本级及下级的工单 cases here and below`;
  $("#file").hidden = me.role === "handler";
  fillSelects();
  await refresh();
  say(`已登录 Signed in as ${me.username}`);
  $("#board-h").setAttribute("tabindex", "-1");
  $("#board-h").focus();
}

function fillSelects() {
  const dept = $("#f-department");
  dept.replaceChildren(el("option", { value: "", text: "（不变 unchanged）" }),
    ...org.departments.map((d) => el("option", { value: d.code, text: `${d.name} ${d.name_en}` })));
  const units = $("#c-unit");
  units.replaceChildren(...org.units.filter((u) => u.level === "grid" || u.level === "street")
    .map((u) => el("option", { value: u.code, text: `${u.name} ${u.name_en}` })));
  const filter = $("#state-filter");
  if (filter.options.length === 1) {
    for (const [key, label] of Object.entries(STATES)) filter.append(el("option", { value: key, text: label }));
  }
}

// Re-drawing (the 10 s poll) must not drop the keyboard's place: the button that had focus (a case number
// or an action) has it again afterwards when it is still there.
function keepingFocus(render) {
  const active = document.activeElement;
  const area = active && active.closest ? active.closest("#board, #actions, #map-list") : null;
  const key = !area ? null : active.dataset.action ? `[data-action="${active.dataset.action}"]`
    : active.dataset.case ? `[data-case="${active.dataset.case}"]` : null;
  render();
  const again = key && document.querySelector(`#${area.id} ${key}`);
  if (again && again !== active) again.focus();
}

// -- the board
async function refresh() {
  const query = new URLSearchParams();
  if ($("#mine").checked) query.set("mine", "1");
  if ($("#state-filter").value) query.set("state", $("#state-filter").value);
  const cases = await call("GET", `?${query}`);
  const rows = cases.filter((c) => $("#state-filter").value || c.state !== "closed").map(row);
  keepingFocus(() => {
    $("#board tbody").replaceChildren(...(rows.length ? rows : [el("tr", {}, el("td", { colspan: "7", text: "暂无工单 No cases" }))]));
    drawMap(cases.filter((c) => c.state !== "closed"));
  });
  if (current) await openCase(current, false);
}

function row(c) {
  const open = el("button", { type: "button", class: "link", "data-case": c.code, text: c.code });
  open.addEventListener("click", () => openCase(c.code, true));
  const deadline = el("td", {}, c.overdue ? el("strong", { class: "overdue", text: "已超时 Overdue " }) : "", when(c.deadline_at));
  return el("tr", { class: c.overdue ? "is-overdue" : "" },
    el("td", {}, open), el("td", {}, badge("urgency", c.urgency, URGENCY)), el("td", {}, badge("state", c.state, STATES)),
    el("td", { text: c.title }), el("td", { text: c.unit_name }),
    el("td", { text: c.department_name || "—" }), deadline);
}

// -- a case
async function openCase(code, focus) {
  const c = await call("GET", `/${code}`);
  current = code;
  $("#detail").hidden = false;
  $("#detail-h").textContent = `工单 Case ${c.code}: ${c.title}`;
  const facts = [
    ["状态 State", STATES[c.state]], ["紧急程度 Urgency", URGENCY[c.urgency]], ["类别 Category", c.category],
    ["位置 Where", `${c.unit_name} (${c.district_name || "—"})`], ["责任部门 Department", c.department_name || "—"],
    ["派遣层级 Dispatched at", c.dispatch_unit_name || "—"], ["值守层级 Duty desk", c.duty_unit_name],
    ["时限 Deadline", `${when(c.deadline_at)}${c.overdue ? " 已超时 Overdue" : ""}`],
    ["来源 Source", `${c.source}${c.reporter ? " · " + c.reporter : ""}`], ["描述 Description", c.description || "—"],
    ["退单 / 返工 Returns / re-opens", `${c.returns} / ${c.reopens}`],
  ];
  $("#facts").replaceChildren(...facts.flatMap(([k, v]) => [el("dt", { text: k }), el("dd", { text: v })]));
  keepingFocus(() => $("#actions").replaceChildren(...c.actions.map((action) => {
    const button = el("button", { type: "button", "data-action": action }, ...bilingual(ACTIONS[action] || action));
    button.addEventListener("click", () => act(c.code, action));
    return button;
  })));
  if (!c.actions.length) $("#actions").append(el("p", { text: "您在此状态下无可用操作 No actions for you in this state" }));
  $("#timeline").replaceChildren(...c.timeline.map(step));
  $("#alerts tbody").replaceChildren(...(c.alerts.length ? c.alerts.map((a) => el("tr", {},
    el("td", { text: when(a.ts) }), el("td", { text: a.sensor_id }), el("td", {}, badge("severity", a.severity, SEVERITY)),
    el("td", { text: a.value == null ? "—" : String(a.value) }), el("td", { text: a.threshold == null ? "—" : String(a.threshold) }),
    el("td", { text: `${a.state === "resolved" ? "已解除 Resolved: " : ""}${a.message}` })))
    : [el("tr", {}, el("td", { colspan: "6", text: "无关联告警 No linked alerts" }))]));
  if (focus) $("#detail-h").focus();
}

function step(e) {
  const parts = [el("time", { datetime: new Date(e.ts * 1000).toISOString(), text: when(e.ts) }), " ",
    el("strong", { text: ACTIONS[e.action] || e.action }), ` · ${e.actor}`];
  if (e.to_state && e.from_state !== e.to_state) parts.push(` · ${STATES[e.from_state] || "—"} → ${STATES[e.to_state]}`);
  if (e.on_time === false) parts.push(el("span", { class: "overdue", text: " 超时 late" }));
  if (e.reason) parts.push(el("div", { text: `原因 Reason: ${e.reason}` }));
  if (e.report) parts.push(el("div", { text: `报告 Report: ${e.report}` }));
  if (e.detail && e.detail.to_unit) parts.push(el("div", { text: `升级至 To: ${e.detail.to_unit}` }));
  for (const url of e.evidence || []) parts.push(el("div", {}, el("a", { href: url, text: `照片 Evidence: ${url}` })));
  return el("li", {}, ...parts);
}

async function act(code, action) {
  fail("");
  const body = {
    reason: $("#f-reason").value, report: $("#f-report").value, note: $("#f-report").value,
    evidence: $("#f-evidence").value.split("\n").map((s) => s.trim()).filter(Boolean),
  };
  if ($("#f-department").value) body.department = $("#f-department").value;
  try {
    const c = await call("POST", `/${code}/actions/${action}`, body);
    for (const id of ["#f-reason", "#f-report", "#f-evidence"]) $(id).value = "";
    $("#f-department").value = "";
    say(`${c.code}: ${ACTIONS[action]} → ${STATES[c.state]}`);
    await refresh();
  } catch (err) { fail(`${ACTIONS[action] || action}: ${err.message}`); }
}

async function fileCase(event) {
  event.preventDefault();
  fail("");
  try {
    const c = await call("POST", "", {
      title: $("#c-title").value, category: $("#c-category").value, unit: $("#c-unit").value,
      urgency: $("#c-urgency").value, description: $("#c-description").value,
      source: $("#c-citizen").checked ? "citizen" : "manual", reporter: $("#c-reporter").value,
    });
    $("#file-form").reset();
    say(`已立案 Filed ${c.code}`);
    current = c.code;
    await refresh();
    $("#detail-h").focus();
  } catch (err) { fail(`立案失败 Filing failed: ${err.message}`); }
}

// -- the map (map.js): the org's GeoJSON as SVG, no tiles, and the same as a text list
function drawMap(cases) {
  CasesMap.draw($("#map"), $("#map-list"), org, cases, URGENCY, STATES, (code) => openCase(code, true));
}

// -- large type
function setLarge(on) {
  document.documentElement.classList.toggle("large", on);
  $("#large").setAttribute("aria-pressed", String(on));
  localStorage.setItem("cases-large", on ? "1" : "");
}

document.addEventListener("DOMContentLoaded", () => {
  $("#signin-form").addEventListener("submit", signIn);
  $("#signout").addEventListener("click", signOut);
  $("#file-form").addEventListener("submit", fileCase);
  $("#mine").addEventListener("change", refresh);
  $("#state-filter").addEventListener("change", refresh);
  $("#large").addEventListener("click", () => setLarge(!document.documentElement.classList.contains("large")));
  setLarge(localStorage.getItem("cases-large") === "1");
  if (token) start().catch(() => signedOut());
  setInterval(() => { if (me) refresh().catch((err) => fail(err.message)); }, 10000);
});
