"""`janus jobs list` and `janus jobs cancel`: a user's jobs, read as GET /dashboard/jobs reads
them, and its queued or waiting jobs cancelled as POST /dashboard/jobs/{job_id}/cancel does."""

from __future__ import annotations

import argparse
from collections.abc import Iterator
from typing import Any, TextIO
from uuid import UUID

from marshmallow import ValidationError

from janus import json_text
from janus.cli.failures import UsageError
from janus.cli.text import aligned_table, moment, one_line, printable
from janus.db import accounts, queue
from janus.db.history import job_page
from janus.history import JobFilter
from janus.queue import CancelOutcome
from janus.schemas.answers import JobSummarySchema
from janus.schemas.requests import JobHistoryQuerySchema


def job_filter(args: argparse.Namespace) -> JobFilter:
    """The filters of `janus jobs list` or `cancel` (which has no --status or --state), read
    as GET /dashboard/jobs reads its query."""
    given = {
        "status": getattr(args, "status", None),
        "state": getattr(args, "state", None),
        "tenant_id": args.tenant,
        "batch_name": args.batch,
        "source": args.source,
        "since": args.since,
        "until": args.until,
    }
    try:
        loaded = JobHistoryQuerySchema().load(
            {name: value for name, value in given.items() if value is not None}
        )
    except ValidationError as error:
        options = {"tenant_id": "tenant", "batch_name": "batch"}
        messages = {
            f"--{options.get(name, name)}": text for name, text in error.messages_dict.items()
        }
        raise UsageError(f"invalid filter: {one_line(messages)}") from None
    return JobFilter(**loaded)


def jobs(args: argparse.Namespace, database_url: str, out: TextIO) -> None:
    """Print the user's newest jobs matching the filters, as a table or (--json) as JSON.

    The JSON's items are GET /dashboard/jobs's.
    """
    filters = job_filter(args)
    with accounts.operator_transaction(database_url) as conn:
        found = job_page(conn, args.user_id, filters, args.limit)
    if args.json:
        print(json_text.dumps({"jobs": JobSummarySchema(many=True).dump(found)}), file=out)
        return
    header = ("job_id", "created_at", "tenant", "batch", "priority", "state", "attempts", "until")
    rows = [
        (
            str(job.job_id),
            job.created_at.strftime("%Y-%m-%d %H:%M:%S%z"),
            printable(job.tenant_id),
            printable(job.batch_name),
            str(job.priority),
            # A rejected job has no state: its status says why it never ran.
            job.state or "rejected",
            str(job.attempts),
            # A running job's lease end, a finished job's end; nothing for the rest.
            moment(job.lease_expires_at or job.finished_at),
        )
        for job in found
    ]
    for line in aligned_table(header, rows, numeric_columns=(4, 6)):
        print(line, file=out)


# `janus jobs cancel` by filter cancels this many jobs a transaction.
CANCEL_CHUNK = 1000
# How the outcome of one id is printed.
_CANCEL_WORDS = {
    CancelOutcome.CANCELLED: "cancelled",
    CancelOutcome.ALREADY_CANCELLED: "already cancelled",
    CancelOutcome.NOT_FOUND: "not found",
}


def jobs_cancel(args: argparse.Namespace, database_url: str, out: TextIO) -> None:
    """Cancel a user's queued or waiting jobs by id, or by filter once --yes says the dry run
    was read.

    By id: one transaction, one line per id. By filter (or --all): the matching jobs
    are counted, and with --yes cancelled, CANCEL_CHUNK a transaction, so a large cancel holds
    no lock for long; jobs queued meanwhile that match are cancelled too.
    """
    filtered = any(
        value is not None
        for value in (args.tenant, args.batch, args.source, args.since, args.until)
    )
    if args.job_ids and (filtered or args.all):
        raise UsageError("give job ids, or filters (or --all), not both")
    if not args.job_ids and not filtered and not args.all:
        raise UsageError(
            "name the jobs to cancel: job ids, filters (--tenant, --batch, --source, --since, "
            "--until) or --all"
        )
    if args.job_ids:
        with accounts.operator_transaction(database_url) as conn:
            cancellations = queue.cancel_jobs(conn, args.user_id, args.job_ids)
        for one in cancellations:
            words = _CANCEL_WORDS.get(one.outcome) or f"not cancelled: {one.state or 'rejected'}"
            print(f"{one.job_id}  {words}", file=out)
        done = sum(one.outcome is CancelOutcome.CANCELLED for one in cancellations)
        print(f"cancelled {done} jobs", file=out)
        return
    filters = job_filter(args)
    with accounts.operator_transaction(database_url, autocommit=True) as conn:
        chunks = _cancellable_chunks(conn, args.user_id, filters)
        if not args.yes:
            count = sum(len(chunk) for chunk in chunks)
            print(
                f"{count} queued or waiting jobs match; nothing was cancelled (a dry run). "
                "Run again with --yes to cancel them.",
                file=out,
            )
            return
        done = 0
        for chunk in chunks:
            cancellations = queue.cancel_jobs(conn, args.user_id, chunk)
            done += sum(one.outcome is CancelOutcome.CANCELLED for one in cancellations)
    print(f"cancelled {done} jobs", file=out)


def _cancellable_chunks(conn: Any, user_id: UUID, filters: JobFilter) -> Iterator[list[UUID]]:
    """The user's queued or waiting jobs matching `filters`, CANCEL_CHUNK ids at a time, in
    job_id order; each chunk is read after the one before has been used."""
    after = None
    while chunk := queue.cancellable_job_ids(
        conn, user_id, filters, after=after, chunk=CANCEL_CHUNK
    ):
        yield chunk
        after = chunk[-1]
