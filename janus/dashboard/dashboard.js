// The Janus dashboard: plain JavaScript, no build step, no third-party code.
// It talks to the same /dashboard routes a producer uses, as the user whose id it is given
// (X-User-ID, kept in this tab's sessionStorage, never in a URL), with the service token when
// the service asks for one.
"use strict";

const STORE = window.sessionStorage;
const USER_KEY = "janus.user";
const TOKEN_KEY = "janus.token";
const REFRESH_MS = 2000;
const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;

const $ = (id) => document.getElementById(id);

// An answer of the API that is not a success, in words a person can act on.
class ApiError extends Error {
  constructor(status, message) {
    super(message);
    this.status = status;
  }
}

async function api(path, options = {}) {
  const headers = { "X-User-ID": STORE.getItem(USER_KEY) || "", ...(options.headers || {}) };
  const token = STORE.getItem(TOKEN_KEY);
  if (token) headers.Authorization = `Bearer ${token}`;
  let response;
  try {
    response = await fetch(path, { ...options, headers, cache: "no-store" });
  } catch (error) {
    throw new ApiError(0, "Janus did not answer: check your connection, then wait for the next refresh.");
  }
  const text = await response.text();
  let body = null;
  try {
    body = text ? JSON.parse(text) : null;
  } catch (error) {
    body = null;
  }
  if (!response.ok) throw new ApiError(response.status, describe(response, body));
  return { response, body };
}

function describe(response, body) {
  const said = body && (body.description || body.title);
  const retry = response.headers.get("Retry-After");
  const prefix = `${response.status} ${response.statusText || ""}`.trim();
  const words = said ? `${prefix}: ${said}` : prefix;
  return retry ? `${words} (try again in ${retry} s)` : words;
}

function show(id, visible) {
  $(id).hidden = !visible;
}

function say(id, message) {
  $(id).textContent = message || "";
  show(id, Boolean(message));
}

// Signing in: an id of the right shape, then the first read of the buckets proves it.

function signIn(event) {
  event.preventDefault();
  const user = $("user-id").value.trim();
  const token = $("token").value;
  if (!UUID.test(user)) {
    say("sign-in-error", "That is not a user id: it is a UUID such as 8f0e1c2a-57b4-4c6d-9e0f-1a2b3c4d5e6f.");
    $("user-id").focus();
    return;
  }
  STORE.setItem(USER_KEY, user);
  if (token) STORE.setItem(TOKEN_KEY, token);
  else STORE.removeItem(TOKEN_KEY);
  start();
}

function signOut(message) {
  stopRefreshing();
  STORE.removeItem(USER_KEY);
  STORE.removeItem(TOKEN_KEY);
  show("who", false);
  show("buckets", false);
  show("sign-in", true);
  say("sign-in-error", message);
  $("user-id").focus();
}

// Buckets, refreshed every REFRESH_MS.

let timer = null;

function stopRefreshing() {
  if (timer !== null) window.clearTimeout(timer);
  timer = null;
}

async function refreshBuckets() {
  stopRefreshing();
  try {
    const { body } = await api("/dashboard/quotas");
    say("buckets-error", "");
    renderBuckets(body);
  } catch (error) {
    if (error.status === 401) {
      signOut(`${error.message}. Enter your user id (and the service token, if Janus asks for one).`);
      return;
    }
    say("buckets-error", error.message);
  }
  timer = window.setTimeout(refreshBuckets, REFRESH_MS);
}

function number(value, digits = 3) {
  return Number(value).toLocaleString(undefined, { maximumFractionDigits: digits });
}

function fullIn(seconds) {
  if (seconds === null) return "never: it does not refill";
  if (Number(seconds) === 0) return "full";
  return `${number(seconds, 1)} s`;
}

function term(list, name, value) {
  const dt = document.createElement("dt");
  dt.textContent = name;
  const dd = document.createElement("dd");
  dd.textContent = value;
  list.append(dt, dd);
}

function gauge(quota) {
  const item = document.createElement("li");
  item.className = "gauge";
  item.dataset.dependency = quota.dependency;
  const title = document.createElement("h3");
  title.textContent = quota.dependency;
  const meter = document.createElement("meter");
  meter.min = 0;
  meter.max = Number(quota.capacity);
  meter.low = Number(quota.capacity) * 0.2;
  meter.optimum = Number(quota.capacity);
  meter.value = Number(quota.tokens);
  meter.setAttribute("aria-label", `${quota.dependency}: ${number(quota.tokens)} of ${quota.capacity} tokens`);
  const facts = document.createElement("dl");
  term(facts, "Tokens", `${number(quota.tokens)} / ${number(quota.capacity)}`);
  const rate = Number(quota.effective_refill_per_second);
  const configured = Number(quota.refill_per_second);
  term(facts, "Refill", rate === configured
    ? `${number(configured)} /s`
    : `${number(rate)} /s (slowed by upstream throttling; configured ${number(configured)} /s)`);
  term(facts, "Full in", fullIn(quota.full_in_seconds));
  item.append(title, meter, facts);
  return item;
}

function renderBuckets(body) {
  const mode = $("mode");
  mode.textContent = body.mode === "shadow" ? "shadow mode: every job is accepted" : body.mode || "";
  mode.hidden = !body.mode;
  $("bucket-list").replaceChildren(...body.quotas.map(gauge));
  show("buckets-empty", body.quotas.length === 0);
  const tenants = body.tenant_quotas || [];
  show("tenants-title", tenants.length > 0);
  show("tenant-table", tenants.length > 0);
  $("tenant-table").tBodies[0].replaceChildren(...tenants.map((quota) => {
    const row = document.createElement("tr");
    for (const text of [quota.dependency, quota.tenant_id,
      `${number(quota.tokens)} / ${number(quota.capacity)}`, fullIn(quota.full_in_seconds)]) {
      const cell = document.createElement("td");
      cell.textContent = text;
      row.append(cell);
    }
    return row;
  }));
}

function start() {
  const user = STORE.getItem(USER_KEY);
  if (!user) {
    signOut("");
    return;
  }
  say("sign-in-error", "");
  $("who-id").textContent = user;
  show("who", true);
  show("sign-in", false);
  show("buckets", true);
  refreshBuckets();
}

document.addEventListener("DOMContentLoaded", () => {
  $("sign-in-form").addEventListener("submit", signIn);
  $("sign-out").addEventListener("click", () => signOut(""));
  start();
});
