// The token and the calls to the gateway's API.
//
// The token lives in this tab's sessionStorage: pasted, or taken from a login link's fragment
// (/console#token=…), which browsers never send to the server; the fragment is then removed from the address
// bar and the history. It leaves the browser only as the Authorization header of the API calls below.

const KEY = "ho.console.token";

export class ApiError extends Error {
  constructor(status, code, message) {
    super(message);
    this.status = status;
    this.code = code;
  }
}

/** Moves a `#token=…` fragment into sessionStorage; true when there was one. */
export function takeTokenFromFragment() {
  const match = /^#token=([^&]+)/.exec(window.location.hash);
  if (!match) return false;
  setToken(decodeURIComponent(match[1]));
  window.history.replaceState(null, "", window.location.pathname + "#/workflows");
  return true;
}

export function token() {
  return window.sessionStorage.getItem(KEY);
}

export function setToken(value) {
  window.sessionStorage.setItem(KEY, value.trim());
}

export function forget() {
  window.sessionStorage.removeItem(KEY);
}

/** The token's claims as written in it (shown, not trusted: the gateway verifies every call). */
export function claims() {
  const value = token();
  if (!value) return null;
  try {
    const part = value.split(".")[1].replace(/-/g, "+").replace(/_/g, "/");
    return JSON.parse(atob(part.padEnd(part.length + ((4 - (part.length % 4)) % 4), "=")));
  } catch {
    return null;
  }
}

/** Calls the API; answers `data` of a success, throws ApiError with the answer's code and message. */
export async function call(method, path, { query, body } = {}) {
  const url = new URL(path, window.location.origin);
  for (const [name, value] of Object.entries(query || {})) {
    if (value !== undefined && value !== null && value !== "") url.searchParams.set(name, value);
  }
  const headers = { Authorization: `Bearer ${token()}` };
  if (body !== undefined) headers["Content-Type"] = "application/json";
  const response = await fetch(url, {
    method,
    headers,
    body: body === undefined ? undefined : JSON.stringify(body),
    credentials: "omit",
    cache: "no-store",
  });
  let answer = null;
  try {
    answer = await response.json();
  } catch {
    throw new ApiError(response.status, "not_json", `the gateway answered ${response.status}`);
  }
  if (response.status === 401) {
    // Expired or not valid here: back to sign-in, saying why (console.js listens).
    forget();
    window.dispatchEvent(new CustomEvent("ho:signed-out", { detail: (answer.error || {}).message }));
  }
  if (!response.ok || !answer.success) {
    const error = answer.error || {};
    throw new ApiError(response.status, error.code || "error", error.message || `HTTP ${response.status}`);
  }
  return answer.data;
}

let documentPromise = null;

/** The enum of a query parameter of an operation, read from the served OpenAPI document (one list for all). */
export async function parameterEnum(operationId, name) {
  documentPromise = documentPromise || fetch("/api/openapi.json").then((r) => r.json());
  const document = await documentPromise;
  for (const item of Object.values(document.paths)) {
    for (const operation of Object.values(item)) {
      if (operation.operationId !== operationId) continue;
      const parameter = (operation.parameters || []).find((p) => p.name === name);
      return (parameter && parameter.schema.enum) || [];
    }
  }
  return [];
}
