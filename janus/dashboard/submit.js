// Submit a job or a batch from the page, or quote it first, and see the exact answer: the
// status line, every header and the body as Janus sent it. Uses dashboard.js's `api`, `call`,
// `typedObject`, `isObject`, `signedIn`, `$`, `say` and `show`. The body goes as the person
// typed it, so a payload keeps its exact text.
"use strict";

// Each kind of request: its route, and the route whose example body it starts with: the seed
// API's, as the OpenAPI document shows it (loadExamples fills `example` in).
const KINDS = {
  single: { path: "/dashboard/jobs", exampleOf: "/dashboard/jobs" },
  partial: { path: "/dashboard/jobs/batch", exampleOf: "/dashboard/jobs/batch" },
  atomic: { path: "/dashboard/jobs/batch/atomic", exampleOf: "/dashboard/jobs/batch" },
};

const QUOTE_PATH = "/dashboard/jobs/quote";

// The body as typed, once it is a JSON object; null (and the reason said) when it is not.
function typedBody() {
  const text = $("submit-body").value;
  const { parsed, refusal } = typedObject(text, "The body");
  say("submit-error", refusal);
  return refusal ? null : { text, parsed };
}

// A quote of an atomic batch is the batch's body with "atomic": true, added to the text as
// typed (a reparsed and rewritten body would lose the payload's exact numbers). One that
// already says "atomic" is sent as it is.
function quoteText(kind, body) {
  if (kind !== "atomic" || "atomic" in body.parsed) return body.text;
  if (Object.keys(body.parsed).length === 0) return '{"atomic": true}';
  return body.text.replace("{", '{"atomic": true, ');
}

async function send(quote) {
  const kind = $("submit-kind").value;
  const body = typedBody();
  if (body === null) return;
  const headers = { "Content-Type": "application/json" };
  const key = $("submit-key").value.trim();
  if (key) headers["Idempotency-Key"] = key;
  const path = quote ? QUOTE_PATH : KINDS[kind].path;
  try {
    const { response, text } = await call(path, {
      method: "POST",
      headers,
      body: quote ? quoteText(kind, body) : body.text,
    });
    renderAnswer(`POST ${path}`, response, text);
  } catch (error) {
    say("submit-error", error.message);
  }
}

function renderAnswer(request, response, text) {
  $("submit-request").textContent = request;
  $("submit-status").textContent = `${response.status} ${response.statusText}`.trim();
  $("submit-status").className = response.ok ? "" : "rejected";
  const lines = [];
  for (const [name, value] of response.headers) lines.push(`${name}: ${value}`);
  $("submit-headers").textContent = lines.join("\n");
  $("submit-answer-body").textContent = text;
  show("submit-answer", true);
}

function forgetAnswer() {
  for (const id of ["submit-request", "submit-status", "submit-headers", "submit-answer-body"]) {
    $(id).textContent = "";
  }
  show("submit-answer", false);
  say("submit-error", "");
}

// A value as JSON on one line, spaced as the documentation writes it.
function oneLine(value) {
  if (Array.isArray(value)) return `[${value.map(oneLine).join(", ")}]`;
  if (isObject(value)) {
    const members = Object.entries(value).map(([name, item]) => `${JSON.stringify(name)}: ${oneLine(item)}`);
    return `{${members.join(", ")}}`;
  }
  return JSON.stringify(value);
}

// An example body as the box shows it: a member a line, a list's items a line each.
function exampleText(body) {
  const members = Object.entries(body).map(([name, value]) => {
    const text = Array.isArray(value)
      ? `[\n${value.map((item) => `    ${oneLine(item)}`).join(",\n")}\n  ]`
      : oneLine(value);
    return `  ${JSON.stringify(name)}: ${text}`;
  });
  return `{\n${members.join(",\n")}\n}`;
}

// The example bodies, read once from GET /openapi.json (which needs the service token, so
// after sign-in); the box gets the chosen kind's unless the person has written their own.
async function loadExamples() {
  if (KINDS.single.example) return;
  try {
    const { body } = await api("/openapi.json");
    for (const kind of Object.values(KINDS)) {
      const content = body.paths[kind.exampleOf].post.requestBody.content["application/json"];
      kind.example = exampleText(content.examples.seed.value);
    }
  } catch (error) {
    if (signedIn(error)) say("submit-error", `No example body: ${error.message}`);
    return;
  }
  const box = $("submit-body");
  if (box.value === "") box.value = KINDS[$("submit-kind").value].example;
  box.dataset.kind = $("submit-kind").value;
}

// Choosing another kind puts its example in the box, unless the person has written their own.
function chooseKind(event) {
  const box = $("submit-body");
  const before = KINDS[box.dataset.kind];
  if (before && box.value === before.example) box.value = KINDS[event.target.value].example || "";
  box.dataset.kind = event.target.value;
}

document.addEventListener("DOMContentLoaded", () => {
  $("submit-kind").addEventListener("change", chooseKind);
  $("submit-form").addEventListener("submit", (event) => {
    event.preventDefault();
    send(false);
  });
  $("submit-quote").addEventListener("click", () => send(true));
  document.addEventListener(SIGNED_OUT, forgetAnswer);
});
