// The Janus dashboard: plain JavaScript, no build step, no third-party code.
// It talks to the same /dashboard routes a producer uses, as the user of the API key it is
// given (sent as a bearer credential), or of the id it is given (X-User-ID, with the service
// token when the service asks for one); both kept in this tab's sessionStorage, never in a URL.
"use strict";

const STORE = window.sessionStorage;
const USER_KEY = "janus.user";
const TOKEN_KEY = "janus.token";
const REFRESH_MS = 2000;
// Sent on the document when the user signs out or is sent back to the sign-in.
const SIGNED_OUT = "janus-signed-out";
const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;

const $ = (id) => document.getElementById(id);

// An answer of the API that is not a success, in words a person can act on.
class ApiError extends Error {
  constructor(status, message) {
    super(message);
    this.status = status;
  }
}

// A call to the API as the signed-in user, whatever its status: the response and its body's
// text. Only a call that got no answer at all throws.
async function call(path, options = {}) {
  const headers = { "X-User-ID": STORE.getItem(USER_KEY) || "", ...(options.headers || {}) };
  const token = STORE.getItem(TOKEN_KEY);
  if (token) headers.Authorization = `Bearer ${token}`;
  let response;
  try {
    response = await fetch(path, { ...options, headers, cache: "no-store" });
  } catch (error) {
    throw new ApiError(0, "Janus did not answer: check your connection, then wait for the next refresh.");
  }
  return { response, text: await response.text() };
}

// An answer's body parsed; null when it has none or it is not JSON.
function parsedAnswer(text) {
  try {
    return text ? JSON.parse(text) : null;
  } catch (error) {
    return null;
  }
}

function isObject(value) {
  return value !== null && typeof value === "object" && !Array.isArray(value);
}

// What a person typed as `what` ("The body"), once it is a JSON object: { parsed }; otherwise
// { refusal }, the words that tell them why nothing was sent.
function typedObject(text, what) {
  let parsed;
  try {
    parsed = JSON.parse(text);
  } catch (error) {
    return { refusal: `${what} is not JSON: ${error.message}. Nothing was sent.` };
  }
  if (!isObject(parsed)) return { refusal: `${what} must be a JSON object ({ … }). Nothing was sent.` };
  return { parsed };
}

// A call that succeeded, its body parsed; any other answer throws an ApiError in words.
async function api(path, options = {}) {
  const { response, text } = await call(path, options);
  const body = parsedAnswer(text);
  if (!response.ok) throw new ApiError(response.status, describe(response, body));
  return { response, body, text };
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

// An API key names its user: janus_<the user's id, 32 hex digits>_<key id>_<secret>.
const API_KEY = /^janus_([0-9a-f]{32})_[0-9a-f]{16}_[0-9a-f]{48}$/;

function signIn(event) {
  event.preventDefault();
  const typed = $("user-id").value.trim();
  const key = API_KEY.exec(typed);
  // With a key, the key is the bearer credential and its user the X-User-ID.
  const user = key ? key[1].replace(/^(.{8})(.{4})(.{4})(.{4})(.{12})$/, "$1-$2-$3-$4-$5") : typed;
  const token = key ? typed : $("token").value;
  if (!UUID.test(user)) {
    say("sign-in-error", "That is neither an API key (janus_…) nor a user id (a UUID such as 8f0e1c2a-57b4-4c6d-9e0f-1a2b3c4d5e6f).");
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
  show("sections", false);
  show("buckets", false);
  show("queue", false);
  show("activity", false);
  show("jobs", false);
  show("rules", false);
  show("submit", false);
  show("job-detail", false);
  $("job-detail-facts").replaceChildren();
  $("job-detail-payload").textContent = "";
  // What the last user was shown goes with them: each script forgets its part.
  document.dispatchEvent(new Event(SIGNED_OUT));
  jobs.cursor = null;
  jobs.next = null;
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

// Every REFRESH_MS: the buckets, the queue (queue.js), and the first page of jobs (a later page
// stays as it was); the chart of jobs per minute (activity.js) reads less often.
async function refresh() {
  stopRefreshing();
  const reads = [refreshBuckets(), refreshQueue(), refreshActivity()];
  if (jobs.cursor === null) reads.push(loadJobs());
  const answered = await Promise.all(reads);
  if (answered.every(Boolean)) timer = window.setTimeout(refresh, REFRESH_MS);
}

// Whether the user is still signed in: a 401 sends them back to the sign-in.
function signedIn(error) {
  if (error.status !== 401) return true;
  signOut(`${error.message}. Enter your user id (and the service token, if Janus asks for one).`);
  return false;
}

// GET `path` and hand its body to `render`, or say the API's refusal in the line `errorId`.
// False when the user is no longer signed in (refresh() then stops), true otherwise.
async function readInto(path, errorId, render) {
  try {
    const { body } = await api(path);
    say(errorId, "");
    render(body);
  } catch (error) {
    if (!signedIn(error)) return false;
    say(errorId, error.message);
  }
  return true;
}

function refreshBuckets() {
  return readInto("/dashboard/quotas", "buckets-error", renderBuckets);
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
      cell(row, text);
    }
    return row;
  }));
}

// Jobs: GET /dashboard/jobs with the filters, a page at a time (the API's cursor).

const jobs = { filters: {}, cursor: null, next: null };

function jobsPath() {
  const params = new URLSearchParams({ limit: "20" });
  for (const [name, value] of Object.entries(jobs.filters)) if (value) params.set(name, value);
  if (jobs.cursor) params.set("cursor", jobs.cursor);
  return `/dashboard/jobs?${params}`;
}

function loadJobs() {
  return readInto(jobsPath(), "jobs-error", renderJobs);
}

function cell(row, content) {
  const td = document.createElement("td");
  if (typeof content === "string") td.textContent = content;
  else td.append(content);
  row.append(td);
  return td;
}

function why(job) {
  if (job.status !== "Rejected") return "";
  return job.retry_after === null ? job.reason : `${job.reason}; retry after ${job.retry_after} s`;
}

function renderJobs(body) {
  jobs.next = body.next;
  $("job-table").tBodies[0].replaceChildren(...body.jobs.map((job) => {
    const row = document.createElement("tr");
    row.dataset.jobId = job.job_id;
    const open = document.createElement("button");
    open.type = "button";
    // The end of the id: ids are time-ordered, so jobs of one moment share their beginning.
    open.textContent = `…${job.job_id.slice(-8)}`;
    open.title = `Show job ${job.job_id}`;
    open.addEventListener("click", () => showJob(job.job_id));
    cell(row, open);
    cell(row, new Date(job.created_at).toLocaleString());
    cell(row, job.tenant_id);
    cell(row, job.batch_name);
    cell(row, String(job.priority));
    cell(row, job.status).className = job.status === "Rejected" ? "rejected" : "";
    cell(row, why(job));
    cell(row, stateText(job));
    return row;
  }));
  show("job-table", body.jobs.length > 0);
  // A page reads a bounded number of jobs: one may end empty with older jobs still to read.
  show("jobs-empty", body.jobs.length === 0 && !jobs.next);
  show("jobs-none-yet", body.jobs.length === 0 && Boolean(jobs.next));
  show("jobs-older", Boolean(jobs.next));
  show("jobs-newest", jobs.cursor !== null);
}

// A job's state; a waiting job's with when it should start, when that is known.
function stateText(job) {
  if (job.state === "waiting" && job.estimated_start) {
    return `waiting, starts ${new Date(job.estimated_start).toLocaleString()}`;
  }
  return job.state || "";
}

function filterJobs(event) {
  event.preventDefault();
  jobs.filters = {
    status: $("filter-status").value,
    tenant_id: $("filter-tenant").value.trim(),
    batch_name: $("filter-batch").value.trim(),
  };
  jobs.cursor = null;
  loadJobs();
}

function pageJobs(cursor) {
  jobs.cursor = cursor;
  loadJobs();
}

// A waiting job: in its dependencies' line for its tokens, or until its run_at; and until
// when it may wait.
function waitingText(job) {
  if (job.state !== "waiting") return "";
  const at = (moment) => new Date(moment).toLocaleString();
  const now = job.in_line_at ? `in line since ${at(job.in_line_at)}` : job.run_at ? `until ${at(job.run_at)}` : "";
  return job.expires_at ? `${now}, expires ${at(job.expires_at)}` : now;
}

const DETAIL = [
  ["Status", (job) => job.status],
  ["Reason", (job) => job.reason],
  ["Retry-After", (job) => (job.retry_after === null ? "" : `${job.retry_after} s`)],
  ["Shadow mode", (job) => (job.shadow_status ? `${job.shadow_status} ${job.shadow_reason}`.trim() : "")],
  ["State", (job) => job.state || ""],
  ["Waiting", (job) => waitingText(job)],
  ["Estimated start", (job) => (job.estimated_start ? new Date(job.estimated_start).toLocaleString() : "")],
  ["Attempts", (job) => String(job.attempts)],
  ["Costs", (job) => JSON.stringify(job.dependencies)],
  ["Real costs", (job) => (job.actual_costs ? JSON.stringify(job.actual_costs) : "")],
  ["Created", (job) => new Date(job.created_at).toLocaleString()],
  ["Finished", (job) => (job.finished_at ? new Date(job.finished_at).toLocaleString() : "")],
  ["Error", (job) => job.error || ""],
  ["Config version", (job) => String(job.config_version)],
];

// A payload or a result is shown as Janus sent it, never through JSON.parse, which would
// round a number beyond a double (1e400, a 40-digit integer) or drop 1.10's zero. These two
// read JSON text as text: where a string ends, and where a member's value is.

function stringEnd(text, start) {
  let at = start + 1;
  while (text[at] !== '"') at += text[at] === "\\" ? 2 : 1;
  return at + 1;
}

// The text of the value of `name`, a member of the object that is the whole of `text`.
function memberText(text, name) {
  let depth = 0;
  for (let at = 0; at < text.length; at += 1) {
    const c = text[at];
    if (c === "{" || c === "[") depth += 1;
    else if (c === "}" || c === "]") depth -= 1;
    else if (c === '"') {
      const end = stringEnd(text, at);
      const colon = text.slice(end).search(/\S/) + end;
      if (depth === 1 && text[colon] === ":" && JSON.parse(text.slice(at, end)) === name) {
        return valueText(text, colon + 1);
      }
      at = end - 1;
    }
  }
  return null;
}

// The value that starts at `start`, up to the comma or bracket that ends it.
function valueText(text, start) {
  let depth = 0;
  let at = start;
  for (; at < text.length; at += 1) {
    const c = text[at];
    if (c === '"') at = stringEnd(text, at) - 1;
    else if (c === "{" || c === "[") depth += 1;
    else if ((c === "}" || c === "]") && depth-- === 0) break;
    else if (c === "," && depth === 0) break;
  }
  return text.slice(start, at).trim();
}

// JSON text laid out two spaces an indent, each number and string kept as it is written.
function indented(text) {
  let out = "";
  let depth = 0;
  const line = () => `\n${"  ".repeat(depth)}`;
  for (let at = 0; at < text.length; at += 1) {
    const c = text[at];
    if (c === '"') {
      const end = stringEnd(text, at);
      out += text.slice(at, end);
      at = end - 1;
    } else if (c === "{" || c === "[") {
      const next = text.slice(at + 1).search(/\S/) + at + 1;
      if (text[next] === (c === "{" ? "}" : "]")) {
        out += c + text[next];
        at = next;
      } else {
        depth += 1;
        out += c + line();
      }
    } else if (c === "}" || c === "]") {
      depth -= 1;
      out += line() + c;
    } else if (c === ",") out += `,${line()}`;
    else if (c === ":") out += ": ";
    else if (!/\s/.test(c)) out += c;
  }
  return out;
}

async function showJob(jobId) {
  try {
    const { body, text } = await api(`/dashboard/jobs/${encodeURIComponent(jobId)}`);
    $("job-detail-id").textContent = body.job_id;
    const facts = $("job-detail-facts");
    facts.replaceChildren();
    for (const [name, value] of DETAIL) {
      const shown = value(body);
      if (shown) term(facts, name, shown);
    }
    if (body.result !== null) term(facts, "Result", memberText(text, "result"));
    $("job-detail-payload").textContent = indented(memberText(text, "payload"));
    // job_actions.js: a Cancel button while the job is queued or waiting, a Retry button once
    // it has failed, expired or been cancelled.
    offerJobActions(body);
    say("jobs-error", "");
    show("job-detail", true);
    $("job-detail-close").focus();
  } catch (error) {
    if (signedIn(error)) say("jobs-error", error.message);
  }
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
  show("sections", true);
  show("sign-in", false);
  show("buckets", true);
  show("queue", true);
  show("activity", true);
  show("jobs", true);
  show("rules", true);
  show("submit", true);
  // rules.js: the active config, its versions and the pause; submit.js: the example bodies.
  loadRules();
  loadExamples();
  refresh();
}

document.addEventListener("DOMContentLoaded", () => {
  $("sign-in-form").addEventListener("submit", signIn);
  $("sign-out").addEventListener("click", () => signOut(""));
  $("job-filters").addEventListener("submit", filterJobs);
  $("jobs-older").addEventListener("click", () => pageJobs(jobs.next));
  $("jobs-newest").addEventListener("click", () => pageJobs(null));
  $("job-detail-close").addEventListener("click", () => show("job-detail", false));
  start();
});
