// The alerts view: the table (most severe first), filters, the detail pane with the
// timeline, and the officer's actions (acknowledge, assign, comment, resolve).

import { alertPath, api } from "./api.js";
import {
  $, KINDS, SEVERITIES, TIMELINE_ACTIONS, bilingual, breakable, el, formatTime, kindLabel, labelFor,
  sensorLabel, severityBadge, statusBadge, valueAndThreshold,
} from "./format.js";
import { required, requireCredentials, showError, showOk } from "./messages.js";

const DONE = {
  ack: ["已确认", "Acknowledged"],
  assign: ["已指派", "Assigned"],
  resolve: ["已解除", "Resolved"],
  comment: ["已添加备注", "Comment added"],
};

const view = {
  alerts: [],
  total: 0,
  json: "", // the last list as received: the table is only redrawn when it changes
  selected: null, // alert_id
  detail: null, // the selected alert with its timeline
  districts: new Set(),
  kinds: new Set(),
  ticket: 0, // the latest request wins; older answers are dropped
  busy: false, // an action is being sent: its buttons stay disabled
};

// -- table ----------------------------------------------------------------------------

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

/** Offer every district and kind seen so far as a filter option (the current choice stays). */
function learnOptions(alerts) {
  for (const [seen, key, selectId, names] of [
    [view.districts, "district", "filter-district", {}],
    [view.kinds, "kind", "filter-kind", KINDS],
  ]) {
    const before = seen.size;
    for (const a of alerts) if (a[key]) seen.add(a[key]);
    if (seen.size === before) continue;
    const select = $(selectId);
    const chosen = select.value;
    const all = el("option", null, "全部 All");
    all.value = "";
    select.replaceChildren(all);
    for (const value of [...seen].sort()) {
      const option = el("option", null, names[value] ? names[value].join(" ") : value);
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
  row.append(
    el("td", "severity", severityBadge(alert.severity)),
    sensor,
    el("td", "district", alert.district),
    el("td", "kind", kindLabel(alert.kind)),
    el("td", "rule", breakable(alert.rule)),
    el("td", "msg", alert.message),
    el("td", "num", valueAndThreshold(alert)),
    el("td", "time", formatTime(alert.started_at)),
    el("td", "status-cell", statusBadge(alert.status)),
    el("td", "assignee", alert.assignee || "—"),
  );
  return row;
}

function renderTable() {
  const body = $("alerts-body");
  const focused = body.contains(document.activeElement) ? document.activeElement.dataset.open : null;
  body.replaceChildren(...view.alerts.map(alertRow));
  markSelected();
  if (focused) {
    const again = body.querySelector(`button[data-open="${CSS.escape(focused)}"]`);
    if (again) again.focus();
  }
  $("alerts-empty").hidden = view.alerts.length > 0;
  $("alerts-count").textContent = view.total > view.alerts.length
    ? `（显示 ${view.alerts.length} / 共 ${view.total} shown of total）` : `（${view.alerts.length}）`;
}

function markSelected() {
  for (const row of $("alerts-body").rows) {
    const selected = row.dataset.alertId === view.selected;
    row.classList.toggle("selected", selected);
    if (selected) row.setAttribute("aria-current", "true");
    else row.removeAttribute("aria-current");
  }
}

/** Put a changed alert (an action's answer) into the table at once. */
function replaceRow(alert) {
  const { timeline, ...row } = alert;
  const i = view.alerts.findIndex((a) => a.alert_id === alert.alert_id);
  if (i >= 0) view.alerts[i] = row;
  view.json = "";
  renderTable();
}

/** Fetch the list (with the filters) and the selected alert; redraw what changed. */
export async function refreshAlerts() {
  const ticket = ++view.ticket;
  const data = await api("GET", `/api/v1/alerts?${filterQuery()}`);
  if (ticket !== view.ticket) return;
  learnOptions(data.alerts);
  const json = JSON.stringify(data);
  if (json !== view.json) {
    view.json = json;
    view.alerts = data.alerts.slice().sort(bySeverity);
    view.total = data.total;
    renderTable();
  }
  if (view.selected) await refreshDetail();
}

// -- detail pane ------------------------------------------------------------------------

async function selectAlert(id) {
  view.selected = id;
  markSelected();
  try {
    await refreshDetail();
    $("detail").scrollIntoView({ block: "nearest" });
  } catch (err) {
    showError(err);
  }
}

async function refreshDetail() {
  const id = view.selected;
  const alert = await api("GET", alertPath(id));
  if (view.selected !== id) return;
  view.detail = alert;
  renderDetail();
}

function field(list, pair, value) {
  list.append(el("dt", null, bilingual(pair)), el("dd", null, value));
}

function renderDetail() {
  const alert = view.detail;
  $("detail-empty").hidden = true;
  $("detail-body").hidden = false;
  $("detail-title").replaceChildren(severityBadge(alert.severity), " ", sensorLabel(alert));
  const list = $("detail-fields");
  list.replaceChildren();
  field(list, ["状态", "Status"], statusBadge(alert.status));
  field(list, ["区", "District"], alert.district);
  field(list, ["类型", "Kind"], kindLabel(alert.kind));
  field(list, ["规则", "Rule"], alert.rule);
  field(list, ["描述", "Message"], alert.message);
  field(list, ["数值/阈值", "Value / threshold"], valueAndThreshold(alert));
  field(list, ["开始", "Started"], formatTime(alert.started_at));
  field(list, ["更新", "Updated"], formatTime(alert.updated_at));
  if (alert.ended_at) field(list, ["结束", "Ended"], formatTime(alert.ended_at));
  field(list, ["确认人", "Acknowledged by"], alert.acknowledged_by || "—");
  field(list, ["负责人", "Assignee"], alert.assignee || "—");
  if (alert.silenced_by && alert.silenced_by.length) field(list, ["静默规则", "Silenced by"], alert.silenced_by.join(", "));
  if (alert.inhibited_by && alert.inhibited_by.length) field(list, ["抑制来源", "Inhibited by"], alert.inhibited_by.join(", "));
  field(list, ["告警编号", "Alert id"], alert.alert_id);

  const resolved = alert.state === "resolved";
  $("do-comment").disabled = view.busy;
  $("do-ack").disabled = view.busy || resolved || Boolean(alert.acknowledged_by);
  $("do-resolve").disabled = view.busy || resolved;
  $("do-assign").disabled = view.busy || resolved;
  $("silence-selected").disabled = resolved;
  $("detail-timeline").replaceChildren(...(alert.timeline || []).slice().reverse().map(timelineItem));
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

// -- actions ------------------------------------------------------------------------------

/** The request body for ``action``, or null after telling the officer what is missing. */
function actionBody(action, by) {
  const note = $("action-note").value.trim();
  if (action === "assign") {
    const assignee = $("action-assignee").value.trim();
    return required(assignee, "action-assignee", "请填写指派对象 Enter who to assign it to") ? { by, assignee } : null;
  }
  if (action === "comment") {
    return required(note, "action-note", "请先填写备注 Write the comment first") ? { by, text: note } : null;
  }
  return note ? { by, comment: note } : { by };
}

/** Send ``action`` for the alert in the detail pane (the one the officer sees). */
async function runAction(action) {
  if (!view.detail) return;
  const id = view.detail.alert_id;
  const by = requireCredentials();
  const body = by && actionBody(action, by);
  if (!body) return;
  if (action === "resolve" &&
      !window.confirm(`确定手动解除此告警？ Resolve this alert by hand?\n${sensorLabel(view.detail)}`)) {
    return;
  }
  view.busy = true;
  renderDetail();
  try {
    const alert = await api("POST", alertPath(id, action), body);
    $("action-note").value = "";
    if (action === "assign") $("action-assignee").value = "";
    replaceRow(alert);
    if (view.detail.alert_id === id) view.detail = alert;
    showOk(`${DONE[action].join(" ")}: ${sensorLabel(alert)}`);
    refreshAlerts().catch(showError);
  } catch (err) {
    showError(err);
    // someone else changed the alert meanwhile: show what it is now (the error stays up)
    if (err.status === 409) refreshAlerts().catch(() => {});
  } finally {
    view.busy = false;
    renderDetail();
  }
}

/** Hook the table, filters and detail pane up; ``onSilence(alert)`` opens a new silence for it. */
export function wireAlerts({ onSilence }) {
  const reload = () => refreshAlerts().catch(showError);
  $("filters").addEventListener("submit", (event) => { event.preventDefault(); reload(); });
  $("filters").addEventListener("change", reload);
  $("alerts-body").addEventListener("click", (event) => {
    const row = event.target.closest("tr[data-alert-id]");
    if (row) selectAlert(row.dataset.alertId);
  });
  for (const button of document.querySelectorAll("#detail button[data-action]")) {
    button.addEventListener("click", () => runAction(button.dataset.action));
  }
  $("silence-selected").addEventListener("click", () => { if (view.detail) onSilence(view.detail); });
}
