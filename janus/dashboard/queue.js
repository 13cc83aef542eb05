// The queue: GET /dashboard/queue, read with the buckets on every refresh of the page. The
// jobs in each state, how long the oldest waiting job has waited, and per dependency the
// waiting, queued and running jobs, what they cost, and how long the bucket takes to cover
// them. Uses dashboard.js's `readInto`, `$`, `show`, `say`, `cell`, `term`, `number` and
// `SIGNED_OUT`; dashboard.js's refresh() calls refreshQueue().
"use strict";

// The answer's states, in the order a job goes through them, and their names on the page.
const QUEUE_STATES = [
  ["waiting", "Waiting"],
  ["queued", "Queued"],
  ["running", "Running"],
  ["completed", "Completed"],
  ["failed", "Failed"],
  ["cancelled", "Cancelled"],
  ["expired", "Expired"],
];

function refreshQueue() {
  return readInto("/dashboard/queue", "queue-error", renderQueue);
}

// Seconds as a person reads a wait: "42.5 s", "12 min", "3.2 h".
function duration(seconds) {
  const s = Number(seconds);
  if (s < 90) return `${number(s, 1)} s`;
  if (s < 90 * 60) return `${number(s / 60, 0)} min`;
  return `${number(s / 3600, 1)} h`;
}

// How long a bucket takes to cover what waits, in words; `drain` is the answer's
// drain_seconds, null when it never does (no refill) or there is no bucket.
function drainText(drain, hasBucket) {
  if (!hasBucket) return "no bucket";
  if (drain === null) return "never: it does not refill";
  if (Number(drain) === 0) return "now";
  return duration(drain);
}

function oldestText(body) {
  const parts = [];
  if (body.oldest_waiting_seconds !== null) {
    parts.push(`the oldest waiting job was submitted ${duration(body.oldest_waiting_seconds)} ago`);
  }
  if (body.oldest_queued_seconds !== null) {
    parts.push(`the oldest queued job ${duration(body.oldest_queued_seconds)} ago`);
  }
  if (parts.length === 0) return "No job is waiting or queued.";
  const text = parts.join("; ");
  return `${text[0].toUpperCase()}${text.slice(1)}.`;
}

// The answer's drain_seconds in words: the longest wait of the buckets; nothing when no job
// waits.
function overallDrain(body) {
  if (!body.dependencies.some((one) => one.waiting_tokens > 0)) return "";
  if (body.drain_seconds === null) {
    return "A bucket that does not refill will never pay for what waits.";
  }
  if (Number(body.drain_seconds) === 0) return "The buckets hold enough for what waits.";
  return `The buckets pay for what waits in ${duration(body.drain_seconds)}.`;
}

function dependencyRow(one) {
  const row = document.createElement("tr");
  row.dataset.dependency = one.dependency;
  const hasBucket = one.tokens !== null;
  for (const text of [
    one.dependency,
    number(one.waiting, 0),
    number(one.queued, 0),
    number(one.running, 0),
    number(one.waiting_tokens, 0),
    hasBucket ? number(one.tokens) : "",
    drainText(one.drain_seconds, hasBucket),
  ]) {
    cell(row, text);
  }
  return row;
}

function renderQueue(body) {
  const states = $("queue-states");
  states.replaceChildren();
  for (const [state, name] of QUEUE_STATES) {
    // Each name with its count in a group of its own, so a narrow screen wraps between pairs.
    const pair = document.createElement("div");
    term(pair, name, number(body.states[state], 0));
    states.append(pair);
  }
  $("queue-ended").textContent = `Completed, failed and cancelled: finished since ${
    new Date(body.ended_since).toLocaleString()}.`;
  $("queue-oldest").textContent = oldestText(body);
  $("queue-table").tBodies[0].replaceChildren(...body.dependencies.map(dependencyRow));
  show("queue-table", body.dependencies.length > 0);
  $("queue-drain").textContent = overallDrain(body);
  say("queue-truncated", body.truncated
    ? "A state holds more jobs than one read counts: the table counts those next in line, so its numbers are lower bounds."
    : "");
}

function forgetQueue() {
  $("queue-states").replaceChildren();
  $("queue-table").tBodies[0].replaceChildren();
  show("queue-table", false);
  for (const id of ["queue-ended", "queue-oldest", "queue-drain"]) $(id).textContent = "";
  say("queue-truncated", "");
  say("queue-error", "");
}

document.addEventListener("DOMContentLoaded", () => {
  document.addEventListener(SIGNED_OUT, forgetQueue);
});
