"""The dashboard's files: its page, style sheet and scripts, served as they are.

Plain HTML, CSS and JavaScript with no build step and nothing from elsewhere: the page talks
to this service's own /dashboard routes (docs/api.md#dashboard). janus/resources/dashboard.py
serves them; the OpenAPI document and the service token's open paths read FILES too.
"""

from typing import NamedTuple

_SCRIPT = "text/javascript; charset=utf-8"


class File(NamedTuple):
    """A file of this package as the dashboard serves it."""

    name: str
    media_type: str
    summary: str


# Route: the file served there. The page loads every one of them.
FILES = {
    "/": File(
        "index.html",
        "text/html; charset=utf-8",
        "The dashboard: a page that asks for a user id and shows its buckets",
    ),
    "/dashboard.css": File(
        "dashboard.css", "text/css; charset=utf-8", "The dashboard's style sheet"
    ),
    "/dashboard.js": File(
        "dashboard.js", _SCRIPT, "The dashboard's script: sign-in, buckets and jobs"
    ),
    "/activity.js": File(
        "activity.js", _SCRIPT, "The dashboard's script for the chart of jobs per minute"
    ),
    "/submit.js": File(
        "submit.js", _SCRIPT, "The dashboard's script to submit and quote jobs and batches"
    ),
    "/rules.js": File(
        "rules.js",
        _SCRIPT,
        "The dashboard's script for the rules: the config, its versions, edits and rollbacks",
    ),
    "/job_actions.js": File(
        "job_actions.js",
        _SCRIPT,
        "The dashboard's script to cancel a queued or waiting job, or retry a failed, expired"
        " or cancelled one, from its detail",
    ),
    "/queue.js": File(
        "queue.js",
        _SCRIPT,
        "The dashboard's script for the queue: jobs by state and by dependency, and drains",
    ),
}
