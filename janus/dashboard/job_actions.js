// Cancelling or retrying a job from its detail: POST /dashboard/jobs/{job_id}/cancel (a queued
// or waiting job) or .../retry (a failed, expired or cancelled one) once the person says Yes
// (as Pause… asks), then the job, the list, the buckets and the queue read anew, so the job
// shows its new state. Uses dashboard.js's `api`, `$`, `say`, `show`, `signedIn`, `showJob`,
// `loadJobs`, `refreshBuckets` and `SIGNED_OUT`, and queue.js's `refreshQueue`; dashboard.js's
// showJob() calls offerJobActions().
"use strict";

// Each action: the states the API takes it from, and the question the person answers. Its
// elements are job-{name} (the button), job-{name}-offer, -confirm, -question, -yes, -no and
// -error; its route is POST /dashboard/jobs/{job_id}/{name}.
const JOB_ACTIONS = {
  // A job a worker has had before spent its tokens on the upstream: the API gives back only
  // those of a job never handed out (attempts 0), and the question says which this is.
  cancel: {
    states: ["queued", "waiting"],
    question: (job) => job.attempts === 0
      ? "Cancel this job? No worker will run it, and the tokens it took go back to its buckets."
      : "Cancel this job? No worker will run it again; a worker had it before, so its tokens stay spent.",
  },
  retry: {
    states: ["failed", "expired", "cancelled"],
    question: () =>
      "Retry this job? It waits again, with a fresh set of attempts, and takes its tokens from its buckets when a worker is handed it.",
  },
};

// The job the detail shows; null when none is shown.
const acting = { job: null };

function offerJobActions(job) {
  acting.job = job;
  for (const [name, action] of Object.entries(JOB_ACTIONS)) {
    show(`job-${name}-offer`, action.states.includes(job.state));
    show(`job-${name}-confirm`, false);
    say(`job-${name}-error`, "");
  }
}

function askJobAction(name) {
  $(`job-${name}-question`).textContent = JOB_ACTIONS[name].question(acting.job);
  show(`job-${name}-confirm`, true);
  $(`job-${name}-yes`).focus();
}

function keepJob(name) {
  show(`job-${name}-confirm`, false);
  $(`job-${name}`).focus();
}

async function actOnJob(name) {
  const jobId = acting.job.job_id;
  show(`job-${name}-confirm`, false);
  try {
    await api(`/dashboard/jobs/${encodeURIComponent(jobId)}/${name}`, { method: "POST" });
  } catch (error) {
    if (!signedIn(error)) return;
    // A 409 means the job moved on since it was shown (a worker claimed it, say): show it as
    // it is now, then the answer, which showJob() would otherwise clear.
    if (error.status === 409) await showJob(jobId);
    else $(`job-${name}`).focus();
    say(`job-${name}-error`, error.message);
    return;
  }
  await Promise.all([showJob(jobId), loadJobs(), refreshBuckets(), refreshQueue()]);
}

function forgetJobActions() {
  acting.job = null;
  for (const name of Object.keys(JOB_ACTIONS)) {
    show(`job-${name}-offer`, false);
    show(`job-${name}-confirm`, false);
    say(`job-${name}-error`, "");
  }
}

document.addEventListener("DOMContentLoaded", () => {
  for (const name of Object.keys(JOB_ACTIONS)) {
    $(`job-${name}`).addEventListener("click", () => askJobAction(name));
    $(`job-${name}-yes`).addEventListener("click", () => actOnJob(name));
    $(`job-${name}-no`).addEventListener("click", () => keepJob(name));
  }
  document.addEventListener(SIGNED_OUT, forgetJobActions);
});
