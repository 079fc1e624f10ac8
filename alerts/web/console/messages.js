// The message box at the top of the console (errors in red, confirmations in green).

import { ApiError, apiToken, describeError, officerName } from "./api.js";
import { $ } from "./format.js";

let fromRefresh = false; // the box shows a failed auto-refresh

export function showMessage(text, kind) {
  fromRefresh = false;
  const box = $("message");
  box.textContent = text;
  box.className = `message ${kind}`;
  box.hidden = false;
}

export const showError = (err) => showMessage(err instanceof ApiError ? describeError(err) : String(err), "error");

export const showOk = (text) => showMessage(text, "ok");

/** Show a failed auto-refresh; the next good refresh takes it away again. */
export function showRefreshError(err) {
  showError(err);
  fromRefresh = true;
}

export function clearRefreshError() {
  if (fromRefresh) {
    $("message").hidden = true;
    fromRefresh = false;
  }
}

/** Complain and focus the field when ``value`` is empty; true when it is there. */
export function required(value, fieldId, text) {
  if (value) return true;
  showMessage(text, "error");
  $(fieldId).focus();
  return false;
}

/** The officer's name when both it and a token are set; otherwise null, after saying what is missing. */
export function requireCredentials() {
  const by = officerName();
  if (!required(by, "officer-name", "请先填写值班员姓名并保存 Enter your name above and save first")) return null;
  if (!required(apiToken(), "api-token",
    "需要令牌 Token needed: 请在上方输入接口令牌并保存 enter the API token above and save")) return null;
  return by;
}
