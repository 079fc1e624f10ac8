// The devices view: each sensor's health as the ingest gateway reports it (GET /api/v1/devices),
// devices needing attention first. A read-only text table: status, last seen, rates, last reason.

import { api } from "./api.js";
import { $, DEVICE_STATUSES, bilingual, breakable, el, formatNumber, formatTime, kindLabel, labelFor } from "./format.js";

let ticket = 0; // the latest request wins; older answers are dropped

function deviceRow(device) {
  const row = el("tr", `device-${device.status}`);
  row.dataset.sensorId = device.sensor_id;
  const totals = `${device.messages} / ${device.readings} / ${device.dead_letters} / ${device.rate_limited}`;
  const sensor = el("th", "sensor", breakable(device.sensor_id));
  sensor.scope = "row";
  row.append(
    el("td", null, el("span", `status device-status-${device.status}`,
      bilingual(labelFor(DEVICE_STATUSES, device.status)))),
    sensor,
    el("td", null, device.district),
    el("td", null, kindLabel(device.kind)),
    el("td", "time", formatTime(device.last_seen)),
    el("td", "number", formatNumber(device.message_rate_per_s)),
    el("td", "number", formatNumber(device.dead_letter_rate_per_s)),
    el("td", "number", totals),
    el("td", "reason", device.last_reason ? `${device.last_reason}（${formatTime(device.last_reason_at)}）` : "—"),
  );
  return row;
}

export async function refreshDevices() {
  const mine = ++ticket;
  const status = $("device-status").value;
  const data = await api("GET", `/api/v1/devices${status ? "?status=" + encodeURIComponent(status) : ""}`);
  if (mine !== ticket) return;
  $("devices-body").replaceChildren(...data.devices.map(deviceRow));
  $("devices-count").textContent = `（${data.total}）`;
  $("devices-empty").hidden = data.devices.length > 0;
}

export function wireDevices(onError) {
  $("device-filters").addEventListener("submit", (event) => { event.preventDefault(); refreshDevices().catch(onError); });
  $("device-filters").addEventListener("change", () => refreshDevices().catch(onError));
}
