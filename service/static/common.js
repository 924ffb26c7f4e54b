/* Shared helpers: calling the /v1 API, building DOM safely, formatting numbers and dates.
 * Customer text only ever reaches the page through textContent / createTextNode (never innerHTML). */
"use strict";

class ApiError extends Error {
  constructor(status, code, message, details) {
    super(message);
    this.status = status;
    this.code = code;
    this.details = details || null;  // the envelope's details: [{code, ...params}] the page translates
  }
}

/** Read the API's error envelope {"error": {"code", "message"}} into an ApiError with a readable message. */
async function apiErrorFrom(response) {
  let code = "HTTP" + response.status;
  let message = t("error.generic", { status: response.status });
  let details = null;
  try {
    const body = await response.json();
    if (body && body.error) {
      code = body.error.code || code;
      message = body.error.message || message;
      details = body.error.details || null;
    }
  } catch (_) { /* not JSON: keep the generic message */ }
  return new ApiError(response.status, code, message, details);
}

/** An error in the page's language: its detail's code when the labels know it ("err." + code, its parameters
 * filled in), else the server's English message. */
function apiErrorText(error) {
  const detail = error && error.details && error.details[0];
  if (detail && detail.code) {
    const key = "err." + detail.code;
    const text = t(key, detail);
    if (text !== key) return text;
  }
  return error instanceof Error ? error.message : String(error);
}

/** The page's CSRF token (empty when access control is off): sent with every state-changing call. */
function csrfToken() {
  const meta = document.querySelector('meta[name="csrf-token"]');
  return meta ? meta.content : "";
}

/** Headers for a call: JSON wanted, and the CSRF token on anything but GET/HEAD. */
function apiHeaders(method) {
  const headers = { Accept: "application/json" };
  const token = csrfToken();
  if (token && !["GET", "HEAD"].includes((method || "GET").toUpperCase())) headers["X-CSRF-Token"] = token;
  return headers;
}

/** The session ended (expired, key revoked): back to the sign-in page, then here again. */
function toSignIn() {
  location.assign("/ui/signin?next=" + encodeURIComponent(location.pathname + location.search));
}

async function api(path, options) {
  const opts = Object.assign({}, options || {});
  opts.headers = Object.assign(apiHeaders(opts.method), opts.headers || {});
  opts.credentials = "same-origin";
  let response;
  try {
    response = await fetch(path, opts);
  } catch (_) {
    throw new ApiError(0, "NetworkError", t("error.network"));
  }
  if (response.status === 401) toSignIn();
  if (!response.ok) throw await apiErrorFrom(response);
  if (response.status === 204) return null;
  return response.json();
}

/** Build an element: el("a", {href: "/x", class: "button", dataset: {testid: "y"}}, "text", child, ...). */
function el(tag, attrs, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs || {})) {
    if (value === null || value === undefined || value === false) continue;
    if (key === "dataset") {
      for (const [k, v] of Object.entries(value)) if (v !== null && v !== undefined) node.dataset[k] = v;
    }
    else if (key === "class") node.className = value;
    else if (key === "text") node.textContent = value;
    else if (key.startsWith("on") && typeof value === "function") node.addEventListener(key.slice(2), value);
    else if (value === true) node.setAttribute(key, "");
    else node.setAttribute(key, String(value));
  }
  for (const child of children.flat()) {
    if (child === null || child === undefined || child === false) continue;
    node.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return node;
}

function clear(node) {
  while (node.firstChild) node.removeChild(node.firstChild);
  return node;
}

function show(node, visible) {
  node.hidden = !visible;
  return node;
}

/** A row's error ({code, message, ...params}) in the page's language ("rowerr." + code), else its message. */
function rowErrorText(error) {
  if (!error) return "?";
  const key = "rowerr." + error.code;
  const text = t(key, error);
  return text === key ? error.message || "?" : text;
}

function showError(node, error) {
  node.textContent = apiErrorText(error);
  node.hidden = false;
}

function locale() { return currentLang === "it" ? "it-IT" : "en-GB"; }

function fmtNumber(value, digits) {
  if (value === null || value === undefined || Number.isNaN(value)) return "–";
  const d = digits === undefined ? 1 : digits;
  return new Intl.NumberFormat(locale(), { maximumFractionDigits: d, minimumFractionDigits: 0 }).format(value);
}

function fmtSigned(value, digits) {
  if (value === null || value === undefined) return "–";
  return (value > 0 ? "+" : "") + fmtNumber(value, digits);
}

function fmtPercent(share, digits) {
  if (share === null || share === undefined) return "–";
  return new Intl.NumberFormat(locale(), { style: "percent", maximumFractionDigits: digits === undefined ? 0 : digits })
    .format(share);
}

function fmtInt(value) { return value === null || value === undefined ? "–" : fmtNumber(value, 0); }

function fmtDateTime(iso) {
  if (!iso) return "–";
  // the API sends naive UTC timestamps
  const d = new Date(/[zZ]|[+-]\d\d:\d\d$/.test(iso) ? iso : iso + "Z");
  return new Intl.DateTimeFormat(locale(), { dateStyle: "medium", timeStyle: "short" }).format(d);
}

function fmtDate(iso) {
  if (!iso) return "–";
  const [y, m, d] = iso.split("-").map(Number);
  return new Intl.DateTimeFormat(locale(), { dateStyle: "medium", timeZone: "UTC" }).format(new Date(Date.UTC(y, m - 1, d)));
}

function fmtDuration(seconds) {
  if (seconds === null || seconds === undefined) return null;
  if (seconds < 90) return t("unit.seconds", { n: Math.max(1, Math.round(seconds)) });
  if (seconds < 5400) return t("unit.minutes", { n: Math.round(seconds / 60) });
  return t("unit.hours", { n: fmtNumber(seconds / 3600, 1) });
}

function languageName(code) {
  if (!code || code === "unknown" || code === "und") return t("lang.unknown");
  try {
    const names = new Intl.DisplayNames([locale()], { type: "language" });
    const name = names.of(code);
    return name ? name.charAt(0).toUpperCase() + name.slice(1) : code;
  } catch (_) {
    return code;
  }
}

function statusBadge(status) {
  return el("span", { class: "badge badge-" + status, dataset: { status } }, t("status." + status));
}

/** Link keeping the chosen language, so every page opens in it. */
function withLang(path) {
  const url = new URL(path, location.origin);
  url.searchParams.set("lang", currentLang);
  return url.pathname + url.search;
}
