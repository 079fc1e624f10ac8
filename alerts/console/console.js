// CityEye duty officers' console: plain ES2020 over the dispatcher's JSON API (/api/v1/).
// Data is only ever put into the page as text (textContent), never as HTML.
// The officer's name lives in localStorage; the API token in sessionStorage only
// (this tab, until it closes). The token is sent in the Authorization header of
// write requests and nowhere else: never in a URL, the page or the console log.
"use strict";

(() => {
  const REFRESH_MS = 5000;
  const STORAGE = { officer: "cityeye.console.officer", token: "cityeye.console.token" };

  // Chinese early-warning colours, most severe first (rank: higher = more severe).
  const SEVERITIES = {
    red: { rank: 4, zh: "红色 I级", en: "Red" },
    orange: { rank: 3, zh: "橙色 II级", en: "Orange" },
    yellow: { rank: 2, zh: "黄色 III级", en: "Yellow" },
    blue: { rank: 1, zh: "蓝色 IV级", en: "Blue" },
  };
  const STATUSES = {
    active: ["未处理", "Active"],
    acknowledged: ["已确认", "Acknowledged"],
    silenced: ["已静默", "Silenced"],
    inhibited: ["已抑制", "Inhibited"],
    flapping: ["抖动", "Flapping"],
    resolved: ["已解除", "Resolved"],
  };
  const KINDS = {
    water_level: ["水位", "Water level"],
    traffic: ["交通", "Traffic"],
    weather: ["气象", "Weather"],
    system: ["系统", "System"],
  };
  const TIMELINE_ACTIONS = {
    raised: ["产生", "Raised"],
    escalated: ["升级", "Escalated"],
    "de-escalated": ["降级", "De-escalated"],
    refired: ["再次触发", "Fired again"],
    resolve_pending: ["待解除", "Resolve pending"],
    resolved: ["已解除", "Resolved"],
    acknowledged: ["已确认", "Acknowledged"],
    assigned: ["已指派", "Assigned"],
    commented: ["备注", "Comment"],
    silenced: ["已静默", "Silenced"],
    unsilenced: ["静默结束", "Unsilenced"],
    inhibited: ["已抑制", "Inhibited"],
    uninhibited: ["抑制结束", "Uninhibited"],
    flapping: ["抖动", "Flapping"],
    flapping_ended: ["抖动结束", "Flapping ended"],
    notified: ["已通知", "Notified"],
  };
  const SILENCE_STATES = {
    pending: ["待生效", "Pending"],
    active: ["生效中", "Active"],
    expired: ["已失效", "Expired"],
  };
  const DONE = {
    ack: ["已确认", "Acknowledged"],
    assign: ["已指派", "Assigned"],
    resolve: ["已解除", "Resolved"],
    comment: ["已添加备注", "Comment added"],
  };

  const state = {
    view: "alerts-view",
    alerts: [],
    total: 0,
    alertsJson: "",
    selected: null, // alert_id
    detail: null, // the selected alert with its timeline
    districts: new Set(),
    kinds: new Set(),
    ticket: 0, // the latest refresh wins; older responses are dropped
    inFlight: false,
    busy: false, // an alert action is being sent
    refreshFailed: false, // the message box shows a failed refresh (cleared by the next good one)
  };

  const $ = (id) => document.getElementById(id);

  // -- small DOM helpers ------------------------------------------------------

  /** An element with a class and children (strings become text nodes). */
  function el(tag, className, ...children) {
    const node = document.createElement(tag);
    if (className) node.className = className;
    for (const child of children) {
      if (child === null || child === undefined) continue;
      node.append(typeof child === "string" ? document.createTextNode(child) : child);
    }
    return node;
  }

  /** "中文 English" with the English part styled as secondary. */
  function bilingual(pair, className) {
    return el("span", className, pair[0] + " ", el("span", "en", pair[1]));
  }

  function labelFor(table, key) {
    return table[key] || [String(key), ""];
  }

  /** Text that may wrap after "_" and "." in narrow columns (zero-width spaces, display only). */
  const breakable = (text) => String(text).replace(/([_.])/g, "$1\u200b");

  const pad = (n) => String(n).padStart(2, "0");

  /** Epoch seconds as local "YYYY-MM-DD HH:MM:SS", or "—". */
  function formatTime(ts) {
    if (ts === null || ts === undefined) return "—";
    const d = new Date(ts * 1000);
    return `${d.getFullYear()}-${pad(d.getMonth() + 1)}-${pad(d.getDate())} ` +
      `${pad(d.getHours())}:${pad(d.getMinutes())}:${pad(d.getSeconds())}`;
  }

  function formatNumber(v) {
    if (v === null || v === undefined) return "—";
    return Number.isInteger(v) ? String(v) : String(Math.round(v * 1000) / 1000);
  }

  function severityBadge(severity) {
    const s = SEVERITIES[severity];
    const badge = el("span", `badge sev-${s ? severity : "unknown"}`);
    badge.append(bilingual(s ? [s.zh, s.en] : [String(severity), ""]));
    return badge;
  }

  function statusBadge(status) {
    return el("span", `status status-${STATUSES[status] ? status : "unknown"}`,
      bilingual(labelFor(STATUSES, status)));
  }

  function sensorLabel(alert) {
    return alert.sensor_name ? `${alert.sensor_name}（${alert.sensor_id}）` : alert.sensor_id;
  }

  // -- API --------------------------------------------------------------------

  class ApiError extends Error {
    constructor(status, message) {
      super(message);
      this.status = status;
    }
  }

  function officerName() {
    return localStorage.getItem(STORAGE.officer) || "";
  }

  function apiToken() {
    return sessionStorage.getItem(STORAGE.token) || "";
  }

  /** Call the API; resolves to the JSON body, rejects with ApiError (the API's own message). */
  async function api(method, path, body) {
    const headers = { Accept: "application/json" };
    if (body !== undefined) headers["Content-Type"] = "application/json";
    if (method !== "GET" && apiToken()) headers.Authorization = `Bearer ${apiToken()}`;
    let response;
    try {
      response = await fetch(path, {
        method, headers, cache: "no-store", credentials: "same-origin",
        body: body === undefined ? undefined : JSON.stringify(body),
      });
    } catch (err) {
      throw new ApiError(0, "network error");
    }
    let data = null;
    try {
      data = await response.json();
    } catch (err) {
      data = null;
    }
    if (!response.ok) {
      const message = data && data.error && data.error.message ? String(data.error.message) : response.statusText;
      throw new ApiError(response.status, message);
    }
    return data;
  }

  const alertPath = (id, action) => `/api/v1/alerts/${encodeURIComponent(id)}${action ? "/" + action : ""}`;

  // -- messages -----------------------------------------------------------------

  function describeError(err) {
    const detail = err.message ? `（${err.message}）` : "";
    switch (err.status) {
      case 0: return `无法连接调度服务 Cannot reach the dispatcher${detail}`;
      case 401: return `需要令牌 Token needed: 请在上方输入正确的接口令牌并保存 enter the API token above and save${detail}`;
      case 404: return `未找到 Not found${detail}`;
      case 409: return `当前状态不允许此操作 Not possible in the alert's current state${detail}`;
      case 413: return `内容过长 Request too large${detail}`;
      case 422: return `输入有误 Invalid input${detail}`;
      default: return `出错 Error (HTTP ${err.status})${detail}`;
    }
  }

  function showMessage(text, kind) {
    state.refreshFailed = false;
    const box = $("message");
    box.textContent = text;
    box.className = `message ${kind}`;
    box.hidden = false;
  }

  const showError = (err) => showMessage(err instanceof ApiError ? describeError(err) : String(err), "error");
  const showOk = (text) => showMessage(text, "ok");

  // -- officer name and token ---------------------------------------------------

  function renderCredentials() {
    $("officer-name").value = officerName();
    $("token-state").textContent = apiToken()
      ? "令牌已设置（仅本标签页） Token set (this tab only)"
      : "未设置令牌：只读 No token set: read-only";
    $("forget-token").disabled = !apiToken();
  }

  function saveCredentials(event) {
    event.preventDefault();
    const name = $("officer-name").value.trim();
    if (name) localStorage.setItem(STORAGE.officer, name);
    else localStorage.removeItem(STORAGE.officer);
    const token = $("api-token").value.trim();
    if (token) sessionStorage.setItem(STORAGE.token, token);
    $("api-token").value = "";
    renderCredentials();
    showOk("已保存 Saved");
  }

  function forgetToken() {
    sessionStorage.removeItem(STORAGE.token);
    renderCredentials();
    showOk("令牌已清除 Token forgotten");
  }

  /** The officer's name and a token, or null after telling the officer what is missing. */
  function requireCredentials() {
    const by = officerName();
    if (!by) {
      showMessage("请先填写值班员姓名并保存 Enter your name above and save first", "error");
      $("officer-name").focus();
      return null;
    }
    if (!apiToken()) {
      showMessage("需要令牌 Token needed: 请在上方输入接口令牌并保存 enter the API token above and save", "error");
      $("api-token").focus();
      return null;
    }
    return by;
  }

  // -- alerts table ---------------------------------------------------------------

  function bySeverity(a, b) {
    const rank = (x) => (SEVERITIES[x.severity] ? SEVERITIES[x.severity].rank : 0);
    return rank(b) - rank(a) || b.started_at - a.started_at || (a.alert_id < b.alert_id ? -1 : 1);
  }

  function filterQuery() {
    const query = new URLSearchParams({ limit: "1000" });
    for (const name of ["state", "district", "severity", "kind"]) {
      const value = $(`filter-${name}`).value;
      if (value) query.set(name, value);
    }
    return query;
  }

  /** Keep every district and kind seen as a filter option (the current choice stays). */
  function learnOptions(alerts) {
    for (const [set, key, selectId, names] of [
      [state.districts, "district", "filter-district", null],
      [state.kinds, "kind", "filter-kind", KINDS],
    ]) {
      const before = set.size;
      for (const a of alerts) if (a[key]) set.add(a[key]);
      if (set.size === before) continue;
      const select = $(selectId);
      const chosen = select.value;
      select.replaceChildren(el("option", null, "全部 All"));
      select.firstChild.value = "";
      for (const value of [...set].sort()) {
        const option = el("option", null, names && names[value] ? `${names[value][0]} ${names[value][1]}` : value);
        option.value = value;
        select.append(option);
      }
      select.value = chosen;
    }
  }

  function alertRow(alert) {
    const row = el("tr", `sev-row-${alert.severity}`);
    row.dataset.alertId = alert.alert_id;
    row.dataset.severity = alert.severity;
    row.dataset.status = alert.status;
    const open = el("button", "link", alert.sensor_name || alert.sensor_id);
    open.type = "button";
    open.dataset.open = alert.alert_id;
    open.setAttribute("aria-label", `查看详情 Show details: ${sensorLabel(alert)}`);
    const sensor = el("td", "sensor", open);
    if (alert.sensor_name) sensor.append(el("span", "sensor-id", alert.sensor_id));
    const kind = KINDS[alert.kind] ? bilingual(KINDS[alert.kind]) : alert.kind;
    row.append(
      el("td", "severity", severityBadge(alert.severity)),
      sensor,
      el("td", "district", alert.district),
      el("td", "kind", kind),
      el("td", "rule", breakable(alert.rule)),
      el("td", "msg", alert.message),
      el("td", "num", `${formatNumber(alert.value)} / ${formatNumber(alert.threshold)}`),
      el("td", "time", formatTime(alert.started_at)),
      el("td", "status-cell", statusBadge(alert.status)),
      el("td", "assignee", alert.assignee || "—"),
    );
    return row;
  }

  function renderAlerts() {
    const body = $("alerts-body");
    const focused = document.activeElement && body.contains(document.activeElement)
      ? document.activeElement.dataset.open : null;
    body.replaceChildren(...state.alerts.map(alertRow));
    markSelected();
    if (focused) {
      const again = body.querySelector(`button[data-open="${CSS.escape(focused)}"]`);
      if (again) again.focus();
    }
    $("alerts-empty").hidden = state.alerts.length > 0;
    $("alerts-count").textContent = state.total > state.alerts.length
      ? `（显示 ${state.alerts.length} / 共 ${state.total} shown of total）` : `（${state.alerts.length}）`;
  }

  function markSelected() {
    for (const row of $("alerts-body").rows) {
      const selected = row.dataset.alertId === state.selected;
      row.classList.toggle("selected", selected);
      if (selected) row.setAttribute("aria-current", "true");
      else row.removeAttribute("aria-current");
    }
  }

  /** Put a changed alert (an action's answer) into the table at once. */
  function replaceAlert(alert) {
    const { timeline, ...row } = alert;
    const i = state.alerts.findIndex((a) => a.alert_id === alert.alert_id);
    if (i >= 0) state.alerts[i] = row;
    state.alertsJson = "";
    renderAlerts();
  }

  async function refreshAlerts() {
    const ticket = ++state.ticket;
    const data = await api("GET", `/api/v1/alerts?${filterQuery()}`);
    if (ticket !== state.ticket) return;
    const json = JSON.stringify(data.alerts);
    learnOptions(data.alerts);
    if (json !== state.alertsJson) {
      state.alertsJson = json;
      state.alerts = data.alerts.slice().sort(bySeverity);
      state.total = data.total;
      renderAlerts();
    }
    if (state.selected) await refreshDetail();
  }

  // -- detail pane -------------------------------------------------------------------

  async function selectAlert(id) {
    state.selected = id;
    markSelected();
    try {
      await refreshDetail();
      $("detail").scrollIntoView({ block: "nearest" });
    } catch (err) {
      showError(err);
    }
  }

  async function refreshDetail() {
    const id = state.selected;
    const alert = await api("GET", alertPath(id));
    if (state.selected !== id) return;
    state.detail = alert;
    renderDetail(alert);
  }

  function field(list, pair, value) {
    list.append(el("dt", null, bilingual(pair)), el("dd", null, value));
  }

  function renderDetail(alert) {
    $("detail-empty").hidden = true;
    $("detail-body").hidden = false;
    $("detail-title").replaceChildren(severityBadge(alert.severity), " ", sensorLabel(alert));
    const list = $("detail-fields");
    list.replaceChildren();
    field(list, ["状态", "Status"], statusBadge(alert.status));
    field(list, ["区", "District"], alert.district);
    field(list, ["类型", "Kind"], KINDS[alert.kind] ? bilingual(KINDS[alert.kind]) : alert.kind);
    field(list, ["规则", "Rule"], alert.rule);
    field(list, ["描述", "Message"], alert.message);
    field(list, ["数值/阈值", "Value / threshold"], `${formatNumber(alert.value)} / ${formatNumber(alert.threshold)}`);
    field(list, ["开始", "Started"], formatTime(alert.started_at));
    field(list, ["更新", "Updated"], formatTime(alert.updated_at));
    if (alert.ended_at) field(list, ["结束", "Ended"], formatTime(alert.ended_at));
    field(list, ["确认人", "Acknowledged by"], alert.acknowledged_by || "—");
    field(list, ["负责人", "Assignee"], alert.assignee || "—");
    if (alert.silenced_by && alert.silenced_by.length) field(list, ["静默规则", "Silenced by"], alert.silenced_by.join(", "));
    if (alert.inhibited_by && alert.inhibited_by.length) field(list, ["抑制来源", "Inhibited by"], alert.inhibited_by.join(", "));
    field(list, ["告警编号", "Alert id"], alert.alert_id);

    const resolved = alert.state === "resolved";
    $("do-comment").disabled = state.busy;
    $("do-ack").disabled = state.busy || resolved || Boolean(alert.acknowledged_by);
    $("do-resolve").disabled = state.busy || resolved;
    $("do-assign").disabled = state.busy || resolved;
    $("silence-selected").disabled = resolved;

    const timeline = $("detail-timeline");
    timeline.replaceChildren(...(alert.timeline || []).slice().reverse().map(timelineItem));
  }

  function timelineItem(entry) {
    const item = el("li", `tl-${entry.action}`,
      el("time", "tl-time", formatTime(entry.ts)), " ",
      bilingual(labelFor(TIMELINE_ACTIONS, entry.action), "tl-action"), " ",
      el("span", "tl-actor", entry.actor === "system" ? "系统 system" : entry.actor));
    const notes = [];
    if (entry.receiver) notes.push(`→ ${entry.receiver}`);
    if (entry.attempt) notes.push(`#${entry.attempt}`);
    if (entry.status) notes.push(entry.status);
    if (entry.detail) notes.push(entry.detail);
    if (notes.length) item.append(el("div", "tl-detail", notes.join(" · ")));
    return item;
  }

  async function runAction(action) {
    const id = state.selected;
    if (!id) return;
    const by = requireCredentials();
    if (!by) return;
    const note = $("action-note").value.trim();
    let body;
    if (action === "assign") {
      const assignee = $("action-assignee").value.trim();
      if (!assignee) {
        showMessage("请填写指派对象 Enter who to assign it to", "error");
        $("action-assignee").focus();
        return;
      }
      body = { by, assignee };
    } else if (action === "comment") {
      if (!note) {
        showMessage("请先填写备注 Write the comment first", "error");
        $("action-note").focus();
        return;
      }
      body = { by, text: note };
    } else {
      body = note ? { by, comment: note } : { by };
    }
    if (action === "resolve" &&
        !window.confirm(`确定手动解除此告警？ Resolve this alert by hand?\n${sensorLabel(state.detail || { sensor_id: id })}`)) {
      return;
    }
    const buttons = document.querySelectorAll("#detail button[data-action]");
    buttons.forEach((b) => { b.disabled = true; });
    state.busy = true; // until the answer is in, refreshes keep the action buttons disabled
    try {
      const alert = await api("POST", alertPath(id, action), body);
      $("action-note").value = "";
      if (action === "assign") $("action-assignee").value = "";
      replaceAlert(alert);
      if (state.selected === id) {
        state.detail = alert;
        renderDetail(alert);
      }
      showOk(`${DONE[action][0]} ${DONE[action][1]}: ${sensorLabel(alert)}`);
      refresh().catch(showError);
    } catch (err) {
      showError(err);
    } finally {
      state.busy = false;
      if (state.detail) renderDetail(state.detail);
      else buttons.forEach((b) => { b.disabled = false; });
    }
  }

  // -- silences ------------------------------------------------------------------

  const matcherText = (m) => (typeof m === "string" ? m : `${m.label}${m.op || "="}${m.value}`);

  function silenceRow(silence) {
    const row = el("tr", `silence-${silence.state}`);
    row.dataset.silenceId = silence.id;
    const cell = el("td", "silence-action");
    if (silence.state !== "expired") {
      const expire = el("button", "secondary", bilingual(["使失效", "Expire"]));
      expire.type = "button";
      expire.dataset.expire = silence.id;
      cell.append(expire);
    } else {
      cell.append("—");
    }
    row.append(
      el("td", null, bilingual(labelFor(SILENCE_STATES, silence.state))),
      el("td", "matchers", silence.matchers.map(matcherText).join(", ")),
      el("td", "time", formatTime(silence.starts_at)),
      el("td", "time", formatTime(silence.expired_at || silence.ends_at)),
      el("td", null, silence.created_by),
      el("td", null, silence.comment),
      cell,
    );
    return row;
  }

  async function refreshSilences() {
    const ticket = ++state.ticket;
    const data = await api("GET", "/api/v1/silences");
    if (ticket !== state.ticket) return;
    $("silences-body").replaceChildren(...data.silences.map(silenceRow));
    $("silences-empty").hidden = data.silences.length > 0;
  }

  async function createSilence(event) {
    event.preventDefault();
    const by = requireCredentials();
    if (!by) return;
    const matchers = $("silence-matchers").value.split("\n").map((s) => s.trim()).filter(Boolean);
    const comment = $("silence-comment").value.trim();
    if (!matchers.length) {
      showMessage("请至少填写一条匹配条件 Enter at least one matcher", "error");
      $("silence-matchers").focus();
      return;
    }
    if (!comment) {
      showMessage("请填写静默原因 Enter the reason", "error");
      $("silence-comment").focus();
      return;
    }
    try {
      const silence = await api("POST", "/api/v1/silences",
        { matchers, duration: $("silence-duration").value, created_by: by, comment });
      $("silence-matchers").value = "";
      $("silence-comment").value = "";
      showOk(`已创建静默 Silence created: ${silence.matchers.map(matcherText).join(", ")}`);
      await refreshSilences();
    } catch (err) {
      showError(err);
    }
  }

  async function expireSilence(id) {
    if (!requireCredentials()) return;
    try {
      await api("DELETE", `/api/v1/silences/${encodeURIComponent(id)}`);
      showOk("静默已失效 Silence expired");
      await refreshSilences();
    } catch (err) {
      showError(err);
    }
  }

  function silenceSelected() {
    const alert = state.detail;
    if (!alert) return;
    $("silence-matchers").value = `sensor=${alert.sensor_id}\nrule=${alert.rule}`;
    showView("silences-view");
    $("silence-comment").focus();
  }

  // -- views and refresh -------------------------------------------------------------

  function showView(view) {
    state.view = view;
    for (const tab of document.querySelectorAll(".tabs button[data-view]")) {
      const on = tab.dataset.view === view;
      tab.setAttribute("aria-pressed", String(on));
      $(tab.dataset.view).hidden = !on;
    }
    refresh().catch(showError);
  }

  async function refresh() {
    if (state.view === "alerts-view") await refreshAlerts();
    else await refreshSilences();
    $("refresh-state").textContent = `更新于 Updated ${formatTime(Date.now() / 1000)}`;
  }

  async function tick() {
    if (state.inFlight) return;
    state.inFlight = true;
    try {
      await refresh();
      if (state.refreshFailed) {
        $("message").hidden = true;
        state.refreshFailed = false;
      }
    } catch (err) {
      showError(err);
      state.refreshFailed = true;
      $("refresh-state").textContent = "刷新失败 Refresh failed";
    } finally {
      state.inFlight = false;
    }
  }

  function wire() {
    $("officer-form").addEventListener("submit", saveCredentials);
    $("forget-token").addEventListener("click", forgetToken);
    $("filters").addEventListener("submit", (event) => { event.preventDefault(); refresh().catch(showError); });
    $("filters").addEventListener("change", () => refresh().catch(showError));
    $("alerts-body").addEventListener("click", (event) => {
      const row = event.target.closest("tr[data-alert-id]");
      if (row) selectAlert(row.dataset.alertId);
    });
    for (const button of document.querySelectorAll("#detail button[data-action]")) {
      button.addEventListener("click", () => runAction(button.dataset.action));
    }
    $("silence-selected").addEventListener("click", silenceSelected);
    $("silence-form").addEventListener("submit", createSilence);
    $("silences-body").addEventListener("click", (event) => {
      const button = event.target.closest("button[data-expire]");
      if (button) expireSilence(button.dataset.expire);
    });
    for (const tab of document.querySelectorAll(".tabs button[data-view]")) {
      tab.addEventListener("click", () => showView(tab.dataset.view));
    }
  }

  wire();
  renderCredentials();
  tick();
  setInterval(tick, REFRESH_MS);
})();
