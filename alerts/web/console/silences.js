// The silences view: the list with each silence's state, creating one (matchers,
// duration, reason) and expiring one.

import { api, silencePath } from "./api.js";
import { $, SILENCE_STATES, bilingual, el, formatTime, labelFor } from "./format.js";
import { required, requireCredentials, showError, showOk } from "./messages.js";

let ticket = 0; // the latest request wins; older answers are dropped

const matcherText = (m) => (typeof m === "string" ? m : `${m.label}${m.op || "="}${m.value}`);

function silenceRow(silence) {
  const row = el("tr", `silence-${silence.state}`);
  row.dataset.silenceId = silence.id;
  const action = el("td", "silence-action");
  if (silence.state === "expired") {
    action.append("—");
  } else {
    const expire = el("button", "secondary", bilingual(["使失效", "Expire"]));
    expire.type = "button";
    expire.dataset.expire = silence.id;
    action.append(expire);
  }
  row.append(
    el("td", null, bilingual(labelFor(SILENCE_STATES, silence.state))),
    el("td", "matchers", silence.matchers.map(matcherText).join(", ")),
    el("td", "time", formatTime(silence.starts_at)),
    el("td", "time", formatTime(silence.expired_at || silence.ends_at)),
    el("td", null, silence.created_by),
    el("td", null, silence.comment),
    action,
  );
  return row;
}

export async function refreshSilences() {
  const mine = ++ticket;
  const data = await api("GET", silencePath());
  if (mine !== ticket) return;
  $("silences-body").replaceChildren(...data.silences.map(silenceRow));
  $("silences-empty").hidden = data.silences.length > 0;
}

async function createSilence(event) {
  event.preventDefault();
  const by = requireCredentials();
  if (!by) return;
  const matchers = $("silence-matchers").value.split("\n").map((s) => s.trim()).filter(Boolean);
  const comment = $("silence-comment").value.trim();
  if (!required(matchers.length, "silence-matchers", "请至少填写一条匹配条件 Enter at least one matcher") ||
      !required(comment, "silence-comment", "请填写静默原因 Enter the reason")) {
    return;
  }
  try {
    const silence = await api("POST", silencePath(),
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
    await api("DELETE", silencePath(id));
    showOk("静默已失效 Silence expired");
    await refreshSilences();
  } catch (err) {
    showError(err);
  }
}

/** Start a new silence for one alert: its sensor and rule as the matchers. */
export function prefillSilence(alert) {
  $("silence-matchers").value = `sensor=${alert.sensor_id}\nrule=${alert.rule}`;
  $("silence-comment").focus();
}

export function wireSilences() {
  $("silence-form").addEventListener("submit", createSilence);
  $("silences-body").addEventListener("click", (event) => {
    const button = event.target.closest("button[data-expire]");
    if (button) expireSilence(button.dataset.expire);
  });
}
