"""`janus jobs list`, `cancel` and `retry`: a user's jobs, read as GET /dashboard/jobs reads
them, its queued or waiting jobs cancelled as POST /dashboard/jobs/{job_id}/cancel does, and
its failed, expired or cancelled jobs sent back to wait as POST .../retry does."""

from __future__ import annotations

import argparse
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any, Protocol, TextIO
from uuid import UUID

from marshmallow import ValidationError

from janus import json_text
from janus.cli.failures import UsageError
from janus.cli.text import aligned_table, moment, one_line, printable
from janus.db import accounts, queue
from janus.db.history import job_page
from janus.history import JobFilter
from janus.queue import CANCELLABLE_STATES, RETRYABLE_STATES, CancelOutcome, RetryOutcome
from janus.schemas.answers import JobSummarySchema
from janus.schemas.requests import JobHistoryQuerySchema


def job_filter(args: argparse.Namespace) -> JobFilter:
    """The filters of `janus jobs list`, `cancel` or `retry` (which have no --status, and whose
    states are their own), read as GET /dashboard/jobs reads its query."""
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
        # The operator's own connection: no bound on the jobs read to fill the page.
        found = job_page(conn, args.user_id, filters, args.limit, examine=None).jobs
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


# `janus jobs cancel` and `retry` by filter change this many jobs a transaction.
CHANGE_CHUNK = 1000


class _Changed(Protocol):
    """How one job went: a Cancellation or a Retrial."""

    @property
    def job_id(self) -> UUID: ...

    @property
    def outcome(self) -> CancelOutcome | RetryOutcome: ...

    @property
    def state(self) -> str | None: ...


@dataclass(frozen=True)
class _Change:
    """What `janus jobs cancel` or `janus jobs retry` does to a job, in its own words."""

    verb: str  # "cancel"
    past: str  # "cancelled"
    # The states its filters match, and how the dry run names them.
    states: tuple[str, ...]
    states_words: str
    # Its filters' options, as a refusal to change nothing names them.
    options: str
    # The SQL function, on an operator's connection: one outcome per id, in order.
    apply: Callable[[Any, UUID, Sequence[UUID]], Sequence[_Changed]]
    done: CancelOutcome | RetryOutcome
    # How an outcome is printed, when not "not <past>: <state>".
    words: Mapping[CancelOutcome | RetryOutcome, str]


_CANCEL = _Change(
    verb="cancel",
    past="cancelled",
    states=CANCELLABLE_STATES,
    states_words="queued or waiting",
    options="--tenant, --batch, --source, --since, --until",
    apply=queue.cancel_jobs,
    done=CancelOutcome.CANCELLED,
    words={
        CancelOutcome.CANCELLED: "cancelled",
        CancelOutcome.ALREADY_CANCELLED: "already cancelled",
        CancelOutcome.NOT_FOUND: "not found",
    },
)
_RETRY = _Change(
    verb="retry",
    past="retried",
    states=RETRYABLE_STATES,
    states_words="failed, expired or cancelled",
    options="--tenant, --batch, --source, --since, --until, --state",
    apply=queue.retry_jobs,
    done=RetryOutcome.RETRIED,
    words={RetryOutcome.RETRIED: "retried", RetryOutcome.NOT_FOUND: "not found"},
)


def jobs_cancel(args: argparse.Namespace, database_url: str, out: TextIO) -> None:
    """Cancel a user's queued or waiting jobs by id, or by filter once --yes says the dry run
    was read (see _change_jobs)."""
    _change_jobs(_CANCEL, args, database_url, out)


def jobs_retry(args: argparse.Namespace, database_url: str, out: TextIO) -> None:
    """Send a user's failed, expired or cancelled jobs back to wait, by id, or by filter (and
    --state) once --yes says the dry run was read (see _change_jobs)."""
    state = args.retry_state
    change = _RETRY if state is None else replace(_RETRY, states=(state,), states_words=state)
    _change_jobs(change, args, database_url, out, state_filter=state)


def _change_jobs(
    change: _Change,
    args: argparse.Namespace,
    database_url: str,
    out: TextIO,
    *,
    state_filter: str | None = None,
) -> None:
    """Cancel or retry jobs by id, or by filter once --yes says the dry run was read.

    By id: one transaction, one line per id. By filter (or --all): the matching jobs are
    counted, and with --yes changed, CHANGE_CHUNK a transaction, so a large change holds no
    lock for long; jobs that come to match meanwhile are changed too.
    """
    filtered = any(
        value is not None
        for value in (
            args.tenant,
            args.batch,
            args.source,
            args.since,
            args.until,
            state_filter,
        )
    )
    if args.job_ids and (filtered or args.all):
        raise UsageError("give job ids, or filters (or --all), not both")
    if not args.job_ids and not filtered and not args.all:
        raise UsageError(
            f"name the jobs to {change.verb}: job ids, filters ({change.options}) or --all"
        )
    if args.job_ids:
        with accounts.operator_transaction(database_url) as conn:
            changed = change.apply(conn, args.user_id, args.job_ids)
        for one in changed:
            words = change.words.get(one.outcome) or f"not {change.past}: {one.state or 'rejected'}"
            print(f"{one.job_id}  {words}", file=out)
        done = sum(one.outcome is change.done for one in changed)
        print(f"{change.past} {done} jobs", file=out)
        return
    filters = job_filter(args)
    with accounts.operator_transaction(database_url, autocommit=True) as conn:
        chunks = _chunks(conn, args.user_id, change.states, filters)
        if not args.yes:
            count = sum(len(chunk) for chunk in chunks)
            print(
                f"{count} {change.states_words} jobs match; nothing was {change.past} "
                f"(a dry run). Run again with --yes to {change.verb} them.",
                file=out,
            )
            return
        done = 0
        for chunk in chunks:
            changed = change.apply(conn, args.user_id, chunk)
            done += sum(one.outcome is change.done for one in changed)
    print(f"{change.past} {done} jobs", file=out)


def _chunks(
    conn: Any, user_id: UUID, states: Sequence[str], filters: JobFilter
) -> Iterator[list[UUID]]:
    """The user's jobs in `states` matching `filters`, CHANGE_CHUNK ids at a time, in job_id
    order; each chunk is read after the one before has been used."""
    after = None
    while chunk := queue.job_ids_in_states(
        conn, user_id, states, filters, after=after, chunk=CHANGE_CHUNK
    ):
        yield chunk
        after = chunk[-1]
