// CityEye duty officers' console: the entry module (plain ES2020 modules, no build step).
// Officer name and token (every API call needs one), the three views (alerts, silences, devices)
// and the 5 s auto-refresh.
// Modules: api.js (API client, credentials), format.js (labels, DOM builders),
// messages.js (the message box), alerts.js, silences.js and devices.js (the views).

import { apiToken, forgetToken, officerName, saveCredentials } from "./api.js";
import { refreshAlerts, wireAlerts } from "./alerts.js";
import { refreshDevices, wireDevices } from "./devices.js";
import { $, formatTime } from "./format.js";
import { clearRefreshError, showError, showOk, showRefreshError } from "./messages.js";
import { prefillSilence, refreshSilences, wireSilences } from "./silences.js";

const REFRESH_MS = 5000;

let currentView = "alerts-view";
let refreshing = false; // an auto-refresh is under way (the next one is skipped)

function renderCredentials() {
  $("officer-name").value = officerName();
  $("token-state").textContent = apiToken()
    ? "令牌已设置（仅本标签页） Token set (this tab only)"
    : "未设置令牌：请输入令牌以查看告警 No token set: enter a token to see the alerts";
  $("forget-token").disabled = !apiToken();
}

function onSaveCredentials(event) {
  event.preventDefault();
  saveCredentials($("officer-name").value.trim(), $("api-token").value.trim());
  $("api-token").value = "";
  renderCredentials();
  showOk("已保存 Saved");
  tick(); // a new token may show what the old one (or none) could not
}

function onForgetToken() {
  forgetToken();
  renderCredentials();
  showOk("令牌已清除 Token forgotten");
}

async function refresh() {
  if (currentView === "alerts-view") await refreshAlerts();
  else if (currentView === "devices-view") await refreshDevices();
  else await refreshSilences();
  $("refresh-state").textContent = `更新于 Updated ${formatTime(Date.now() / 1000)}`;
}

function showView(view) {
  currentView = view;
  for (const tab of document.querySelectorAll(".tabs button[data-view]")) {
    const on = tab.dataset.view === view;
    tab.setAttribute("aria-pressed", String(on));
    $(tab.dataset.view).hidden = !on;
  }
  refresh().catch(showError);
}

async function tick() {
  if (refreshing) return;
  refreshing = true;
  try {
    await refresh();
    clearRefreshError();
  } catch (err) {
    showRefreshError(err);
    $("refresh-state").textContent = "刷新失败 Refresh failed";
  } finally {
    refreshing = false;
  }
}

$("officer-form").addEventListener("submit", onSaveCredentials);
$("forget-token").addEventListener("click", onForgetToken);
for (const tab of document.querySelectorAll(".tabs button[data-view]")) {
  tab.addEventListener("click", () => showView(tab.dataset.view));
}
wireAlerts({ onSilence: (alert) => { showView("silences-view"); prefillSilence(alert); } });
wireSilences();
wireDevices(showError);
renderCredentials();
tick();
setInterval(tick, REFRESH_MS);
