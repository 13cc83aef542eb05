"""The dashboard's reads: GET /dashboard/jobs (a page of the job history), GET
/dashboard/jobs/{job_id} (one job), GET /dashboard/activity (jobs per minute over the last
hour), GET /dashboard/quotas (each bucket as of now), GET /dashboard/queue (the jobs by state
and by dependency)."""

from __future__ import annotations

import base64
import binascii
import re
from datetime import UTC, datetime, timedelta
from typing import Any
from uuid import UUID

import falcon
from marshmallow import ValidationError

from janus import json_text
from janus.history import (
    DEFAULT_PAGE,
    MAX_PAGE,
    ActivityReader,
    JobFilter,
    JobHistory,
    JobPosition,
)
from janus.queue_view import QueueReader
from janus.quotas import QuotaReader
from janus.resources.errors import InvalidBody
from janus.resources.requests import authenticated_user, one_page, only_params, page_param
from janus.schemas.answers import (
    ActivityAnswerSchema,
    JobDetailSchema,
    JobHistoryAnswerSchema,
    QuotasAnswerSchema,
)
from janus.schemas.queue_answers import QueueAnswerSchema
from janus.schemas.requests import JobHistoryQuerySchema

NO_SUCH_JOB = "this user has no job with this id"

JOB_PAGE = JobHistoryAnswerSchema()
JOB_DETAIL = JobDetailSchema()
ACTIVITY = ActivityAnswerSchema()
QUOTAS = QuotasAnswerSchema()
QUEUE = QueueAnswerSchema()

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MICROSECOND = timedelta(microseconds=1)
# What a cursor holds, before base64url: the last job's created_at in microseconds since the
# Unix epoch (exact: Postgres keeps microseconds), and its id.
_POSITION = re.compile(
    r"(-?[0-9]{1,19}),([0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12})", re.ASCII
)
_BAD_CURSOR = "Not a cursor: pass the `next` of an earlier answer, unchanged."


def encode_cursor(position: JobPosition) -> str:
    """The opaque cursor of a page that ends at `position`: base64url, unpadded."""
    micros = (position.created_at - _EPOCH) // _MICROSECOND
    raw = f"{micros},{position.job_id}".encode("ascii")
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode("ascii")


def decode_cursor(cursor: str) -> JobPosition:
    """The position a cursor of encode_cursor names; 400 for anything else."""
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode("ascii")
        match = _POSITION.fullmatch(raw)
        if match is None:
            raise ValueError(cursor)
        position = JobPosition(_EPOCH + int(match.group(1)) * _MICROSECOND, UUID(match.group(2)))
    except (ValueError, binascii.Error, OverflowError):
        raise InvalidBody(_BAD_CURSOR, {"cursor": [_BAD_CURSOR]}) from None
    # One spelling per position: a cursor changed anywhere is refused, not read differently.
    if encode_cursor(position) != cursor:
        raise InvalidBody(_BAD_CURSOR, {"cursor": [_BAD_CURSOR]})
    return position


def _filters(req: falcon.Request) -> JobFilter:
    given = {name: value for name, value in req.params.items() if name not in ("limit", "cursor")}
    try:
        loaded: dict[str, Any] = JobHistoryQuerySchema().load(given)
    except ValidationError as error:
        raise InvalidBody("the query parameters are not valid", error.messages) from None
    return JobFilter(**loaded)


def _answer_json(resp: falcon.Response, document: Any) -> None:
    """An answer holding stored JSON text or exact decimals, written as they are."""
    resp.content_type = falcon.MEDIA_JSON
    resp.text = json_text.dumps(document)


class JobListResource:
    """GET /dashboard/jobs: the user's jobs newest first, filtered, a page at a time."""

    PARAMS = ("limit", "cursor", *JobHistoryQuerySchema().fields)

    def __init__(self, history: JobHistory) -> None:
        self._history = history

    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        """A page of `limit` jobs below `cursor`, and the `next` cursor (null at the end)."""
        user_id = authenticated_user(req)
        only_params(req, self.PARAMS)
        # Every bad parameter is named in one answer, not one per attempt.
        errors: dict[str, Any] = {}
        try:
            filters = _filters(req)
        except InvalidBody as error:
            errors.update(error.errors)
        try:
            limit = page_param(req, "limit", DEFAULT_PAGE, MAX_PAGE)
        except InvalidBody as error:
            errors.update(error.errors)
        cursor = req.get_param("cursor")
        try:
            after = None if cursor is None else decode_cursor(cursor)
        except InvalidBody as error:
            errors.update(error.errors)
        if errors:
            raise InvalidBody("the query parameters are not valid", errors)
        assert limit is not None
        found = self._history.jobs(user_id, filters, limit + 1, after)
        page, more = one_page(found.jobs, limit)
        # A full page ends at its last job; one whose read reached its bound first ends where
        # that read stopped, the jobs between having been read and found not to match.
        end = page[-1].position if more else found.read_up_to
        resp.media = JOB_PAGE.dump(
            {"jobs": page, "next": None if end is None else encode_cursor(end)}
        )


class JobRecordResource:
    """GET /dashboard/jobs/{job_id}: one job of the user with everything stored about it."""

    def __init__(self, history: JobHistory) -> None:
        self._history = history

    def on_get(self, req: falcon.Request, resp: falcon.Response, job_id: UUID) -> None:
        """The job; 404 alike for an unknown id and another user's job."""
        user_id = authenticated_user(req)
        only_params(req, ())
        job = self._history.job(user_id, job_id)
        if job is None:
            raise falcon.HTTPNotFound(description=NO_SUCH_JOB)
        _answer_json(resp, JOB_DETAIL.dump(job))


class ActivityResource:
    """GET /dashboard/activity: the user's jobs per minute, accepted and rejected by reason."""

    def __init__(self, reader: ActivityReader) -> None:
        self._reader = reader

    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        """Each of the last 60 minutes, oldest first, and since when the jobs were counted."""
        user_id = authenticated_user(req)
        only_params(req, ())
        resp.media = ACTIVITY.dump(self._reader.activity(user_id))


class QuotaResource:
    """GET /dashboard/quotas: the user's token buckets and tenant buckets as of now."""

    def __init__(self, reader: QuotaReader) -> None:
        self._reader = reader

    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        """The mode, the buckets by dependency name and the tenant buckets closest to their
        limit; empty lists and a null mode without an active config."""
        user_id = authenticated_user(req)
        only_params(req, ())
        _answer_json(resp, QUOTAS.dump(self._reader.quotas(user_id)))


class QueueViewResource:
    """GET /dashboard/queue: the user's jobs by state and by dependency, and the drains."""

    def __init__(self, reader: QueueReader) -> None:
        self._reader = reader

    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        """The counts by state, the ages of the oldest waiting and queued jobs, and per
        dependency the jobs, their tokens and how long the bucket takes to cover them."""
        user_id = authenticated_user(req)
        only_params(req, ())
        _answer_json(resp, QUEUE.dump(self._reader.queue(user_id)))
