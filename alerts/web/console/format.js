// Labels (中文 first, English second), formatting and DOM builders for the console.
// Everything from the API goes into the page as text nodes, never as HTML.

/** Chinese early-warning levels, most severe first (rank: higher = more severe). */
export const SEVERITIES = {
  red: { rank: 4, zh: "红色 I级", en: "Red" },
  orange: { rank: 3, zh: "橙色 II级", en: "Orange" },
  yellow: { rank: 2, zh: "黄色 III级", en: "Yellow" },
  blue: { rank: 1, zh: "蓝色 IV级", en: "Blue" },
};

export const STATUSES = {
  active: ["未处理", "Active"],
  acknowledged: ["已确认", "Acknowledged"],
  silenced: ["已静默", "Silenced"],
  inhibited: ["已抑制", "Inhibited"],
  flapping: ["抖动", "Flapping"],
  resolved: ["已解除", "Resolved"],
};

export const KINDS = {
  water_level: ["水位", "Water level"],
  traffic: ["交通", "Traffic"],
  weather: ["气象", "Weather"],
  system: ["系统", "System"],
};

export const TIMELINE_ACTIONS = {
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

export const SILENCE_STATES = {
  pending: ["待生效", "Pending"],
  active: ["生效中", "Active"],
  expired: ["已失效", "Expired"],
};

export const DEVICE_STATUSES = {
  rejecting: ["拒收中", "Rejecting"],
  rate_limited: ["限流中", "Rate-limited"],
  silent: ["无数据", "Silent"],
  ok: ["正常", "OK"],
};

export const $ = (id) => document.getElementById(id);

/** An element with a class and children (strings become text nodes). */
export function el(tag, className, ...children) {
  const node = document.createElement(tag);
  if (className) node.className = className;
  for (const child of children) {
    if (child === null || child === undefined) continue;
    node.append(typeof child === "string" ? document.createTextNode(child) : child);
  }
  return node;
}

/** "中文 English" with the English part styled as secondary. */
export function bilingual(pair, className) {
  return el("span", className, pair[0] + " ", el("span", "en", pair[1]));
}

/** The label pair for ``key`` in ``table``, or the key itself. */
export function labelFor(table, key) {
  return table[key] || [String(key), ""];
}

/** Text that may wrap after "_" and "." in narrow columns (zero-width spaces, display only). */
export const breakable = (text) => String(text).replace(/([_.])/g, "$1\u200b");

const pad = (n) => String(n).padStart(2, "0");

/** Epoch seconds as local "YYYY-MM-DD HH:MM:SS", or "—". */
export function formatTime(ts) {
  if (ts === null || ts === undefined) return "—";
  const d = new Date(ts * 1000);
  return `${d.getFullYear()}-${pad(d.getMonth() + 1)}-${pad(d.getDate())} ` +
    `${pad(d.getHours())}:${pad(d.getMinutes())}:${pad(d.getSeconds())}`;
}

export function formatNumber(v) {
  if (v === null || v === undefined) return "—";
  return Number.isInteger(v) ? String(v) : String(Math.round(v * 1000) / 1000);
}

export const valueAndThreshold = (alert) => `${formatNumber(alert.value)} / ${formatNumber(alert.threshold)}`;

export function severityBadge(severity) {
  const s = SEVERITIES[severity];
  return el("span", `badge sev-${s ? severity : "unknown"}`, bilingual(s ? [s.zh, s.en] : [String(severity), ""]));
}

export function statusBadge(status) {
  return el("span", `status status-${STATUSES[status] ? status : "unknown"}`, bilingual(labelFor(STATUSES, status)));
}

export function kindLabel(kind) {
  return KINDS[kind] ? bilingual(KINDS[kind]) : String(kind);
}

/** "name（id）", or the id when the sensor has no name. */
export function sensorLabel(alert) {
  return alert.sensor_name ? `${alert.sensor_name}（${alert.sensor_id}）` : alert.sensor_id;
}
