// The Rules screens: the active config, its versions and what changed between two of them,
// editing it, rolling back, pausing and resuming. Every change waits for the person to say
// Yes. Uses dashboard.js's `api`, `call`, `parsedAnswer`, `isObject`, `typedObject`,
// `describe`, `ApiError`, `$`, `say`, `show`, `signedIn` and `SIGNED_OUT`.
"use strict";

const VERSIONS_PAGE = 20;
// What GET /dashboard/config adds to the config a PUT takes: the user's pause state belongs
// to the user, not to a version, so an edit leaves it out (and keeps it as it is).
const NOT_EDITED = new Set(["version", "activated_at", "paused"]);

const rules = {
  paused: null,
  // The config in force: its version, ETag and the fields a PUT takes; null when none.
  active: null,
  // The version an open edit started from, and its ETag (sent as If-Match).
  editFrom: null,
  // The versions read so far, newest first, and the cursor of the next page.
  versions: [],
  next: null,
  // The version an open rollback confirmation names, and the button that asked (focused again
  // on Cancel).
  activating: null,
  asker: null,
};

function when(moment) {
  return moment ? new Date(moment).toLocaleString() : "never";
}

// Pause and resume.

function renderPause(paused, since) {
  rules.paused = paused;
  $("pause-state").textContent = paused
    ? `Paused${since ? ` since ${new Date(since).toLocaleString()}` : ""}: every job is refused with 403 service paused.`
    : "Admitting jobs.";
  $("pause-toggle").textContent = paused ? "Resume…" : "Pause…";
  show("pause-confirm", false);
}

function askPause() {
  $("pause-question").textContent = rules.paused
    ? "Resume admitting this user's jobs?"
    : "Pause this user? Every job will be refused until you resume.";
  show("pause-confirm", true);
  $("pause-yes").focus();
}

async function setPause() {
  try {
    const { body } = await api(rules.paused ? "/dashboard/resume" : "/dashboard/pause", { method: "POST" });
    renderPause(body.paused, body.since);
    say("rules-error", "");
  } catch (error) {
    if (signedIn(error)) say("rules-error", error.message);
  }
}

// The active config: GET /dashboard/config, with the ETag an edit sends back as If-Match.

function editable(body) {
  return Object.fromEntries(Object.entries(body).filter(([name]) => !NOT_EDITED.has(name)));
}

async function loadActive() {
  try {
    const { response, body } = await api("/dashboard/config");
    rules.active = { version: body.version, etag: response.headers.get("ETag"), config: editable(body) };
    const names = Object.keys(body.dependencies).join(", ") || "none";
    $("rules-summary").textContent = `Config version ${body.version} (${body.mode} mode), `
      + `active since ${when(body.activated_at)}; buckets: ${names}.`;
    $("active-config").textContent = JSON.stringify(rules.active.config, null, 2);
    show("active-config", true);
    renderPause(body.paused, null);
    say("rules-error", "");
  } catch (error) {
    if (!signedIn(error)) return;
    rules.active = null;
    $("rules-summary").textContent = "";
    $("active-config").textContent = "";
    show("active-config", false);
    say("rules-error", error.message);
  }
}

// Versions: GET /dashboard/config/versions, newest first, a page at a time.

function versionsPath() {
  const params = new URLSearchParams({ limit: String(VERSIONS_PAGE) });
  if (rules.next) params.set("cursor", rules.next);
  return `/dashboard/config/versions?${params}`;
}

async function loadVersions(more = false) {
  if (!more) {
    rules.versions = [];
    rules.next = null;
  }
  try {
    const { body } = await api(versionsPath());
    rules.versions = rules.versions.concat(body.versions);
    rules.next = body.next;
    say("versions-error", "");
  } catch (error) {
    if (!signedIn(error)) return;
    say("versions-error", error.message);
  }
  renderVersions();
  // Another page keeps the two versions compared; a fresh list starts from the defaults.
  renderChoices(more);
}

function versionItem(stored) {
  const item = document.createElement("li");
  item.dataset.version = String(stored.version);
  const title = document.createElement("strong");
  title.textContent = `Version ${stored.version}`;
  item.append(title);
  if (stored.is_active) {
    const badge = document.createElement("span");
    badge.className = "badge";
    badge.textContent = "active";
    item.append(" ", badge);
  }
  const facts = document.createElement("span");
  facts.className = "hint";
  facts.textContent = `Created ${when(stored.created_at)}; last activated ${when(stored.activated_at)}.`;
  item.append(facts);
  if (!stored.is_active) {
    const activate = document.createElement("button");
    activate.type = "button";
    activate.textContent = "Activate…";
    activate.setAttribute("aria-label", `Activate version ${stored.version}…`);
    activate.addEventListener("click", () => askActivate(stored.version, activate));
    item.append(activate);
  }
  return item;
}

function renderVersions() {
  $("version-list").replaceChildren(...rules.versions.map(versionItem));
  show("versions-empty", rules.versions.length === 0);
  show("versions-older", Boolean(rules.next));
}

// Rolling back: POST /dashboard/config/versions/{version}/activate once the person says Yes.

function askActivate(version, asker) {
  rules.activating = version;
  rules.asker = asker;
  $("activate-question").textContent =
    `Make version ${version} the active config again? Jobs are decided by it from now on.`;
  say("versions-done", "");
  show("activate-confirm", true);
  $("activate-yes").focus();
}

function closeActivate() {
  rules.activating = null;
  rules.asker = null;
  show("activate-confirm", false);
}

function cancelActivate() {
  const asker = rules.asker;
  closeActivate();
  if (asker && asker.isConnected) asker.focus();
}

async function activate() {
  const version = rules.activating;
  closeActivate();
  try {
    const { body } = await api(`/dashboard/config/versions/${version}/activate`, { method: "POST" });
    say("versions-error", "");
    say("versions-done", `Version ${body.version} is the active config now.`);
    await Promise.all([loadActive(), loadVersions()]);
  } catch (error) {
    if (signedIn(error)) say("versions-error", error.message);
  }
}

// What changed between two versions: a diff of their configs by key path.

function shown(value) {
  return typeof value === "string" ? value : JSON.stringify(value);
}

// Each difference from `before` to `after`: [kind, text], kind one of added, removed, changed.
function differences(before, after, path = "") {
  if (!(isObject(before) && isObject(after))) {
    if (JSON.stringify(before) === JSON.stringify(after)) return [];
    return [["changed", `${path}: ${shown(before)} → ${shown(after)}`]];
  }
  const names = [...new Set([...Object.keys(before), ...Object.keys(after)])].sort();
  return names.flatMap((name) => {
    const at = path ? `${path}.${name}` : name;
    if (!(name in after)) return [["removed", `− ${at}: ${shown(before[name])}`]];
    if (!(name in before)) return [["added", `+ ${at}: ${shown(after[name])}`]];
    return differences(before[name], after[name], at);
  });
}

function option(stored) {
  const choice = document.createElement("option");
  choice.value = String(stored.version);
  choice.textContent = `Version ${stored.version}${stored.is_active ? " (active)" : ""}`;
  return choice;
}

// Both lists hold every version read so far: by default the active one, and the one before
// it (the one after it when the active one is the oldest).
function renderChoices(keep) {
  const listed = rules.versions;
  const from = $("diff-from");
  const to = $("diff-to");
  const kept = [from.value, to.value];
  from.replaceChildren(...listed.map(option));
  to.replaceChildren(...listed.map(option));
  show("diff-form", listed.length > 1);
  if (listed.length === 0) {
    renderDiff();
    return;
  }
  const active = listed.find((stored) => stored.is_active) || listed[0];
  const earlier = listed.find((stored) => stored.version < active.version);
  const later = listed.filter((stored) => stored.version > active.version).pop();
  const other = earlier || later || active;
  const values = listed.map((stored) => String(stored.version));
  const chosen = keep && kept.every((value) => values.includes(value))
    ? kept : [String(other.version), String(active.version)];
  [from.value, to.value] = chosen;
  renderDiff();
}

function renderDiff() {
  const pick = (id) => rules.versions.find((stored) => String(stored.version) === $(id).value);
  const before = pick("diff-from");
  const after = pick("diff-to");
  if (rules.versions.length < 2 || !before || !after) {
    $("diff-list").replaceChildren();
    say("diff-empty", rules.versions.length === 1 ? "Only one version so far: nothing to compare." : "");
    return;
  }
  // A version's `paused` was applied when it was written; a rollback leaves the pause alone,
  // so it is not one of the rules compared.
  const found = differences(editable(before.config), editable(after.config));
  $("diff-list").replaceChildren(...found.map(([kind, text]) => {
    const item = document.createElement("li");
    item.className = kind;
    item.textContent = text;
    return item;
  }));
  say("diff-empty", found.length === 0 ? "No differences." : "");
}

// Editing: the active config as JSON, PUT with If-Match once the person says Yes.

function openEditor() {
  const from = rules.active;
  rules.editFrom = from ? { version: from.version, etag: from.etag } : null;
  $("edit-config").value = JSON.stringify(from ? from.config : { dependencies: {} }, null, 2);
  $("edit-from").textContent = from
    ? `Starts from version ${from.version}. It is saved only if version ${from.version} is still the active one.`
    : "This user has no config yet: this one becomes version 1.";
  clearEditError();
  show("edit-confirm", false);
  say("edit-done", "");
  show("edit-open", false);
  show("edit-form", true);
  $("edit-config").focus();
}

function closeEditor() {
  rules.editFrom = null;
  show("edit-confirm", false);
  clearEditError();
  show("edit-form", false);
  show("edit-open", true);
}

function clearEditError() {
  say("edit-error-text", "");
  $("edit-error-fields").replaceChildren();
  show("edit-reload", false);
  show("edit-error", false);
}

function editError(message, fieldErrors = [], stale = false) {
  say("edit-error-text", message);
  $("edit-error-fields").replaceChildren(...fieldErrors.map((line) => {
    const item = document.createElement("li");
    item.textContent = line;
    return item;
  }));
  show("edit-reload", stale);
  show("edit-error", true);
}

// The config typed, once it is a JSON object; null (and the reason said) when it is not.
function typedConfig() {
  const text = $("edit-config").value;
  const { refusal } = typedObject(text, "The config");
  if (refusal) {
    editError(refusal);
    return null;
  }
  return text;
}

function askSave(event) {
  event.preventDefault();
  clearEditError();
  if (typedConfig() === null) {
    $("edit-config").focus();
    return;
  }
  const from = rules.editFrom;
  $("edit-question").textContent = from
    ? `Save this as a new version and make it active in place of version ${from.version}? Jobs are decided by it from now on.`
    : "Save this as version 1 and make it active? Jobs are decided by it from now on.";
  show("edit-confirm", true);
  $("edit-yes").focus();
}

// The API's field errors, one line each: "dependencies.openai.capacity: Must be …".
// Marshmallow files a dict's entries under "value" (or "key", for the name itself).
function fieldLines(errors, path = "") {
  if (Array.isArray(errors)) {
    return errors.flatMap((message) => (isObject(message)
      ? fieldLines(message, path)
      : [`${path || "the config"}: ${message}`]));
  }
  if (!isObject(errors)) return [`${path || "the config"}: ${errors}`];
  return Object.entries(errors).flatMap(([name, inner]) => {
    if (name === "value" || name === "_schema") return fieldLines(inner, path);
    if (name === "key") return fieldLines(inner, `${path} (its name)`);
    return fieldLines(inner, path ? `${path}.${name}` : name);
  });
}

async function save() {
  show("edit-confirm", false);
  const text = typedConfig();
  if (text === null) return;
  const headers = { "Content-Type": "application/json" };
  if (rules.editFrom && rules.editFrom.etag) headers["If-Match"] = rules.editFrom.etag;
  let answer;
  try {
    answer = await call("/dashboard/config", { method: "PUT", headers, body: text });
  } catch (error) {
    editError(error.message);
    return;
  }
  const { response } = answer;
  const body = parsedAnswer(answer.text);
  if (response.ok) {
    closeEditor();
    say("edit-done", `Saved: version ${body.version} is the active config now.`);
    await Promise.all([loadActive(), loadVersions()]);
    return;
  }
  if (!signedIn(new ApiError(response.status, describe(response, body)))) return;
  const words = describe(response, body);
  if (response.status === 412) {
    editError(`${words}. Someone else changed the config after you started editing. Reload the `
      + "active config and make your change again (what you typed here is replaced).", [], true);
  } else if (response.status === 400 && body && body.errors) {
    editError(`${words}. Nothing was stored:`, fieldLines(body.errors));
  } else {
    editError(`${words}. Nothing was stored.`);
  }
}

async function reloadAndEdit() {
  await Promise.all([loadActive(), loadVersions()]);
  openEditor();
}

// Everything at once: start() calls it when a person signs in.
function loadRules() {
  return Promise.all([loadActive(), loadVersions()]);
}

function forgetRules() {
  rules.paused = null;
  rules.active = null;
  rules.versions = [];
  rules.next = null;
  closeEditor();
  closeActivate();
  $("edit-config").value = "";
  for (const id of ["rules-summary", "pause-state", "active-config"]) $(id).textContent = "";
  for (const id of ["rules-error", "versions-error", "versions-done", "edit-done", "diff-empty"]) say(id, "");
  renderVersions();
  $("diff-from").replaceChildren();
  $("diff-to").replaceChildren();
  $("diff-list").replaceChildren();
}

document.addEventListener("DOMContentLoaded", () => {
  $("pause-toggle").addEventListener("click", askPause);
  $("pause-yes").addEventListener("click", setPause);
  $("pause-no").addEventListener("click", () => show("pause-confirm", false));
  $("edit-open").addEventListener("click", openEditor);
  $("edit-form").addEventListener("submit", askSave);
  $("edit-cancel").addEventListener("click", closeEditor);
  $("edit-yes").addEventListener("click", save);
  $("edit-no").addEventListener("click", () => {
    show("edit-confirm", false);
    $("edit-save").focus();
  });
  $("edit-reload").addEventListener("click", reloadAndEdit);
  $("versions-older").addEventListener("click", () => loadVersions(true));
  $("activate-yes").addEventListener("click", activate);
  $("activate-no").addEventListener("click", cancelActivate);
  for (const id of ["diff-from", "diff-to"]) $(id).addEventListener("change", renderDiff);
  document.addEventListener(SIGNED_OUT, forgetRules);
});
