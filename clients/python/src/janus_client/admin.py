"""The admin calls of the API as Calls (see calls.py): the config, its versions and the
pause; the job history, one job, cancel and retry; the buckets. Routes: docs/api.md."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from datetime import datetime
from typing import Any, TypeVar

import httpx

from janus_client._core import Call, check
from janus_client.records import (
    ActiveConfig,
    ConfigVersion,
    JobDetail,
    JobRecord,
    Page,
    PauseChange,
    PauseState,
    Quotas,
    from_answer,
)

R = TypeVar("R")

# Items per page of the listings the iterators fetch: the most the API gives in one.
PAGE_SIZE = 100


# --- config and pause ---


def _active_config(response: httpx.Response) -> ActiveConfig:
    return ActiveConfig.from_answer(check(response), response.headers.get("ETag", ""))


def get_config() -> Call[ActiveConfig]:
    """GET /dashboard/config."""
    return Call("GET", "/dashboard/config", _active_config)


def put_config(config: Mapping[str, Any], if_match: int | str | None) -> Call[ActiveConfig]:
    """PUT /dashboard/config, with If-Match: a version number, an ETag ('"3"') or "*"."""
    headers = None
    if if_match is not None:
        headers = {"If-Match": f'"{if_match}"' if isinstance(if_match, int) else if_match}
    # Not repeatable: a PUT whose answer was lost may have stored its version.
    return Call(
        "PUT",
        "/dashboard/config",
        _active_config,
        body=dict(config),
        headers=headers,
        repeatable=False,
    )


def activate_config(version: int) -> Call[ActiveConfig]:
    """POST /dashboard/config/versions/{version}/activate (activating twice changes nothing)."""
    return Call("POST", f"/dashboard/config/versions/{version}/activate", _active_config)


def _page(
    path: str,
    member: str,
    record: Callable[[dict[str, Any]], R],
    limit: int,
    cursor: str | None,
    filters: Mapping[str, str] | None = None,
) -> Call[Page[R]]:
    """A page of a listing: `limit` items after `cursor` (the previous page's `next`)."""
    params = {**(filters or {}), "limit": str(limit)}
    if cursor is not None:
        params["cursor"] = cursor

    def parse(response: httpx.Response) -> Page[R]:
        body = check(response)
        return Page([record(item) for item in body[member]], body["next"])

    return Call("GET", path, parse, params=params)


def config_versions_page(limit: int, cursor: str | None) -> Call[Page[ConfigVersion]]:
    """GET /dashboard/config/versions: a page, newest first."""
    return _page(
        "/dashboard/config/versions",
        "versions",
        lambda item: from_answer(ConfigVersion, item),
        limit,
        cursor,
    )


def pause(paused: bool) -> Call[PauseState]:
    """POST /dashboard/pause or /dashboard/resume (both change nothing when already so)."""
    return Call(
        "POST",
        "/dashboard/pause" if paused else "/dashboard/resume",
        lambda response: from_answer(PauseState, check(response)),
    )


def pause_history_page(limit: int, cursor: str | None) -> Call[Page[PauseChange]]:
    """GET /dashboard/pause/history: a page, newest first."""
    return _page(
        "/dashboard/pause/history",
        "changes",
        lambda item: from_answer(PauseChange, item),
        limit,
        cursor,
    )


# --- history and quotas ---


def jobs_page(
    filters: Mapping[str, str | datetime | None], limit: int, cursor: str | None
) -> Call[Page[JobRecord]]:
    """GET /dashboard/jobs: a page of the history, newest first, with the filters given."""
    given = {
        name: value.isoformat() if isinstance(value, datetime) else value
        for name, value in filters.items()
        if value is not None
    }
    return _page(
        "/dashboard/jobs", "jobs", lambda item: from_answer(JobRecord, item), limit, cursor, given
    )


def get_job(job_id: str) -> Call[JobDetail]:
    """GET /dashboard/jobs/{job_id}."""
    return Call(
        "GET", f"/dashboard/jobs/{job_id}", lambda response: from_answer(JobDetail, check(response))
    )


def _job_action(job_id: str, action: str, repeatable: bool) -> Call[str]:
    return Call(
        "POST",
        f"/dashboard/jobs/{job_id}/{action}",
        lambda response: str(check(response)["state"]),
        repeatable=repeatable,
    )


def cancel_job(job_id: str) -> Call[str]:
    """POST /dashboard/jobs/{job_id}/cancel: the job's new state (a repeat answers the same)."""
    return _job_action(job_id, "cancel", repeatable=True)


def retry_job(job_id: str) -> Call[str]:
    """POST /dashboard/jobs/{job_id}/retry: the job's new state. Not repeatable: a second
    retry of a job already waiting again is a 409."""
    return _job_action(job_id, "retry", repeatable=False)


def quotas() -> Call[Quotas]:
    """GET /dashboard/quotas."""
    return Call("GET", "/dashboard/quotas", lambda response: Quotas.from_answer(check(response)))
