// Cancelling a queued or waiting job from its detail: POST /dashboard/jobs/{job_id}/cancel once
// the person says Yes (as Pause… asks), then the job, the list, the buckets and the queue read
// anew, so the job shows cancelled and its tokens back. Uses dashboard.js's `api`, `$`, `say`,
// `show`, `signedIn`, `showJob`, `loadJobs`, `refreshBuckets` and `SIGNED_OUT`, and queue.js's
// `refreshQueue`; dashboard.js's showJob() calls offerCancel().
"use strict";

// The job the detail shows while it is queued or waiting (for its next attempt), the states
// the API cancels; null otherwise.
const cancelling = { job: null };

function offerCancel(job) {
  cancelling.job = job.state === "queued" || job.state === "waiting" ? job : null;
  show("job-cancel-offer", cancelling.job !== null);
  show("job-cancel-confirm", false);
  say("job-cancel-error", "");
}

// A job a worker has had before spent its tokens on the upstream: the API gives back only
// those of a job never handed out (attempts 0), and the question says which this is.
function askCancel() {
  $("job-cancel-question").textContent = cancelling.job.attempts === 0
    ? "Cancel this job? No worker will run it, and the tokens it took go back to its buckets."
    : "Cancel this job? No worker will run it again; a worker had it before, so its tokens stay spent.";
  show("job-cancel-confirm", true);
  $("job-cancel-yes").focus();
}

function keepJob() {
  show("job-cancel-confirm", false);
  $("job-cancel").focus();
}

async function cancelJob() {
  const jobId = cancelling.job.job_id;
  show("job-cancel-confirm", false);
  try {
    await api(`/dashboard/jobs/${encodeURIComponent(jobId)}/cancel`, { method: "POST" });
  } catch (error) {
    if (!signedIn(error)) return;
    // A 409 means the job moved on since it was shown (a worker claimed it): show it as it is
    // now, then the answer, which showJob() would otherwise clear.
    if (error.status === 409) await showJob(jobId);
    else $("job-cancel").focus();
    say("job-cancel-error", error.message);
    return;
  }
  await Promise.all([showJob(jobId), loadJobs(), refreshBuckets(), refreshQueue()]);
}

function forgetCancel() {
  cancelling.job = null;
  show("job-cancel-offer", false);
  show("job-cancel-confirm", false);
  say("job-cancel-error", "");
}

document.addEventListener("DOMContentLoaded", () => {
  $("job-cancel").addEventListener("click", askCancel);
  $("job-cancel-yes").addEventListener("click", cancelJob);
  $("job-cancel-no").addEventListener("click", keepJob);
  document.addEventListener(SIGNED_OUT, forgetCancel);
});
