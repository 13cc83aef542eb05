// The chart of jobs per minute over the last hour: GET /dashboard/activity, drawn by hand as
// inline SVG (stacked bars: accepted, then each rejection reason in a colour of its own).
// Uses dashboard.js's `readInto`, `$`, `say` and `SIGNED_OUT`; dashboard.js's
// refresh() calls refreshActivity().
"use strict";

// Every 10 s, not every 2 s as the buckets: a bar is a minute wide, so a fresher read changes
// little, while one read counts up to janus.history.ACTIVITY_MAX_JOBS jobs in Postgres (tens
// of milliseconds for a busy user), where a read of the buckets costs next to nothing.
const ACTIVITY_REFRESH_MS = 10000;
const SVG_NS = "http://www.w3.org/2000/svg";
const CHART_HEIGHT = 180;
// Room for the count labels on the left and the time labels below.
const MARGIN = { top: 10, right: 6, bottom: 22, left: 40 };
const ACCEPTED_COLOUR = "#3c9a5f";
// One per rejection reason, in the reasons' name order; they repeat past the eighth.
const REASON_COLOURS = ["#b3261e", "#d08a12", "#7b4fc9", "#1f78b4", "#c2185b", "#6d4c41",
  "#00838f", "#5b6475"];
const UNCOUNTED_COLOUR = "#e4e8ef";

const activity = { answer: null, readAt: 0 };

// Called on every refresh of the page; reads only once ACTIVITY_REFRESH_MS have passed since
// the last read. False when the user is no longer signed in, as the page's other reads.
async function refreshActivity() {
  if (activity.answer !== null && Date.now() - activity.readAt < ACTIVITY_REFRESH_MS) return true;
  return readInto("/dashboard/activity", "activity-error", (body) => {
    activity.answer = body;
    activity.readAt = Date.now();
    drawActivity();
  });
}

function forgetActivity() {
  activity.answer = null;
  activity.readAt = 0;
  $("activity-chart").replaceChildren();
  $("activity-legend").replaceChildren();
  $("activity-summary").textContent = "";
  say("activity-note", "");
}

function svg(name, attributes = {}, text = "") {
  const element = document.createElementNS(SVG_NS, name);
  for (const [key, value] of Object.entries(attributes)) element.setAttribute(key, String(value));
  if (text) element.textContent = text;
  return element;
}

function counted(minute) {
  return minute.accepted !== null;
}

// Every reason of the answer, in name order, with its colour.
function reasonColours(minutes) {
  const reasons = new Set();
  for (const minute of minutes) for (const reason of Object.keys(minute.rejected || {})) reasons.add(reason);
  return new Map([...reasons].sort().map((reason, n) => [reason, REASON_COLOURS[n % REASON_COLOURS.length]]));
}

function totals(minutes, colours) {
  const byReason = new Map([...colours.keys()].map((reason) => [reason, 0]));
  let accepted = 0;
  for (const minute of minutes.filter(counted)) {
    accepted += minute.accepted;
    for (const [reason, jobs] of Object.entries(minute.rejected)) byReason.set(reason, byReason.get(reason) + jobs);
  }
  const rejected = [...byReason.values()].reduce((sum, jobs) => sum + jobs, 0);
  return { accepted, rejected, byReason };
}

function clock(iso) {
  return new Date(iso).toLocaleTimeString(undefined, { hour: "2-digit", minute: "2-digit" });
}

// "12 accepted, 3 rejected (dependency 'openai' rate limit exceeded 3)"
function describeJobs(accepted, byReason) {
  const reasons = [...byReason].filter(([, jobs]) => jobs > 0);
  const rejected = reasons.reduce((sum, [, jobs]) => sum + jobs, 0);
  const why = reasons.map(([reason, jobs]) => `${reason} ${number(jobs)}`).join(", ");
  return `${number(accepted)} accepted, ${number(rejected)} rejected${why ? ` (${why})` : ""}`;
}

function drawActivity() {
  const body = activity.answer;
  if (body === null) return;
  const minutes = body.minutes;
  const colours = reasonColours(minutes);
  const sum = totals(minutes, colours);
  const since = body.counted_since;
  const words = `${since ? `Since ${new Date(since).toLocaleTimeString()}` : "Last hour"}: ${describeJobs(sum.accepted, sum.byReason)}`;
  $("activity-summary").textContent = words;
  say("activity-note", since
    ? `The hour held more jobs than Janus counts in one read (only the newest are): they are counted from ${new Date(since).toLocaleString()} on, and the shaded minutes before were not counted.`
    : "");

  const chart = $("activity-chart");
  // One unit of the viewBox is one CSS pixel at the width the chart has now, so its text stays
  // the page's size on a phone as on a laptop; the bars share out the width.
  const width = Math.max(240, Math.round(chart.getBoundingClientRect().width) || 600);
  chart.setAttribute("viewBox", `0 0 ${width} ${CHART_HEIGHT}`);
  chart.setAttribute("aria-label", words);
  const plotWidth = width - MARGIN.left - MARGIN.right;
  const plotHeight = CHART_HEIGHT - MARGIN.top - MARGIN.bottom;
  const slot = plotWidth / minutes.length;
  const gap = slot > 4 ? 1 : 0;
  const peak = Math.max(1, ...minutes.filter(counted).map((minute) =>
    minute.accepted + Object.values(minute.rejected).reduce((total, jobs) => total + jobs, 0)));
  const scale = plotHeight / peak;
  const baseline = MARGIN.top + plotHeight;

  const parts = [svg("title", { id: "activity-chart-title" }, words)];
  parts.push(svg("line", { x1: MARGIN.left, x2: width - MARGIN.right, y1: MARGIN.top, y2: MARGIN.top, class: "chart-grid" }));
  parts.push(svg("line", { x1: MARGIN.left, x2: width - MARGIN.right, y1: baseline, y2: baseline, class: "chart-axis" }));
  parts.push(svg("text", { x: MARGIN.left - 6, y: MARGIN.top + 4, "text-anchor": "end", class: "chart-label" }, number(peak)));
  parts.push(svg("text", { x: MARGIN.left - 6, y: baseline, "text-anchor": "end", class: "chart-label" }, "0"));
  minutes.forEach((minute, index) => {
    const x = MARGIN.left + index * slot;
    const bar = svg("g", { class: "chart-minute" });
    if (!counted(minute)) {
      bar.append(svg("title", {}, `${clock(minute.minute)}: not counted`),
        svg("rect", { x, y: MARGIN.top, width: Math.max(slot - gap, 0.5), height: plotHeight, fill: UNCOUNTED_COLOUR }));
      parts.push(bar);
      return;
    }
    const stack = [["accepted", minute.accepted, ACCEPTED_COLOUR],
      ...Object.entries(minute.rejected).sort().map(([reason, jobs]) => [reason, jobs, colours.get(reason)])];
    let top = baseline;
    bar.append(svg("title", {}, `${clock(minute.minute)}: ${describeJobs(minute.accepted, new Map(Object.entries(minute.rejected)))}`));
    for (const [, jobs, colour] of stack) {
      if (jobs === 0) continue;
      const height = jobs * scale;
      top -= height;
      bar.append(svg("rect", { x, y: top, width: Math.max(slot - gap, 0.5), height, fill: colour }));
    }
    parts.push(bar);
  });
  // The first minute, the middle one and the current one, in the reader's time.
  for (const index of [0, Math.floor(minutes.length / 2), minutes.length - 1]) {
    const anchor = index === 0 ? "start" : index === minutes.length - 1 ? "end" : "middle";
    const x = MARGIN.left + index * slot + (anchor === "end" ? slot : anchor === "start" ? 0 : slot / 2);
    parts.push(svg("text", { x, y: CHART_HEIGHT - 6, "text-anchor": anchor, class: "chart-label" }, clock(minutes[index].minute)));
  }
  chart.replaceChildren(...parts);
  drawLegend(sum, colours);
}

function swatch(colour) {
  const box = svg("svg", { width: 12, height: 12, viewBox: "0 0 12 12", "aria-hidden": "true" });
  box.append(svg("rect", { width: 12, height: 12, rx: 2, fill: colour }));
  return box;
}

function legendItem(colour, text) {
  const item = document.createElement("li");
  const words = document.createElement("span");
  words.textContent = text;
  item.append(swatch(colour), words);
  return item;
}

function drawLegend(sum, colours) {
  const items = [legendItem(ACCEPTED_COLOUR, `Accepted: ${number(sum.accepted)}`)];
  for (const [reason, colour] of colours) {
    items.push(legendItem(colour, `Rejected, ${reason}: ${number(sum.byReason.get(reason))}`));
  }
  if (activity.answer.counted_since) items.push(legendItem(UNCOUNTED_COLOUR, "Not counted"));
  $("activity-legend").replaceChildren(...items);
}

document.addEventListener("DOMContentLoaded", () => {
  document.addEventListener(SIGNED_OUT, forgetActivity);
  // The chart is drawn to the width it has: drawn again when that changes.
  window.addEventListener("resize", drawActivity);
});
