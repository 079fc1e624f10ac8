// The dispatcher's JSON API (/api/v1/) and the officer's credentials.
// The officer's name lives in localStorage; the API token in sessionStorage only
// (this tab, until it closes). Every API call needs a token (a read-only token
// shows the alerts, the write token also acts on them); it is sent in the
// Authorization header and nowhere else: never in a URL, the page or the console log.

const STORAGE = { officer: "cityeye.console.officer", token: "cityeye.console.token" };

export function officerName() {
  return localStorage.getItem(STORAGE.officer) || "";
}

export function apiToken() {
  return sessionStorage.getItem(STORAGE.token) || "";
}

/** Remember the name (empty: forget it); keep a non-empty token for this tab. */
export function saveCredentials(name, token) {
  if (name) localStorage.setItem(STORAGE.officer, name);
  else localStorage.removeItem(STORAGE.officer);
  if (token) sessionStorage.setItem(STORAGE.token, token);
}

export function forgetToken() {
  sessionStorage.removeItem(STORAGE.token);
}

/** A refused or failed API call: the HTTP status (0: no answer) and the API's own message. */
export class ApiError extends Error {
  constructor(status, message) {
    super(message);
    this.status = status;
  }
}

/** Call the API; resolves to the JSON body, rejects with ApiError. */
export async function api(method, path, body) {
  const headers = { Accept: "application/json" };
  if (body !== undefined) headers["Content-Type"] = "application/json";
  if (apiToken()) headers.Authorization = `Bearer ${apiToken()}`;
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

export const alertPath = (id, action) => `/api/v1/alerts/${encodeURIComponent(id)}${action ? "/" + action : ""}`;

export const silencePath = (id) => `/api/v1/silences${id ? "/" + encodeURIComponent(id) : ""}`;

/** What to tell the officer about a refused call (bilingual, then the API's message). */
export function describeError(err) {
  const detail = err.message ? `（${err.message}）` : "";
  switch (err.status) {
    case 0: return `无法连接调度服务 Cannot reach the dispatcher${detail}`;
    case 401: return `需要令牌 Token needed: 请在上方输入正确的接口令牌并保存 enter the API token above and save${detail}`;
    case 403: return `此令牌只读 This token may only read: 需要写入令牌 the write token is needed${detail}`;
    case 404: return `未找到 Not found${detail}`;
    case 409: return `当前状态不允许此操作 Not possible in the alert's current state${detail}`;
    case 413: return `内容过长 Request too large${detail}`;
    case 422: return `输入有误 Invalid input${detail}`;
    default: return `出错 Error (HTTP ${err.status})${detail}`;
  }
}
