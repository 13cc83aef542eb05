"""`janus prune`: what expired goes, and each user keeps its newest rows of each kind only."""

from __future__ import annotations

import argparse
from collections.abc import Callable
from datetime import timedelta
from typing import TextIO

from janus.cli.failures import UsageError
from janus.db import accounts, maintenance
from janus.settings import JobsPartitioning

DEFAULT_REJECTED_RETENTION_DAYS = 7.0
# What `janus prune` keeps of each user's rows, however fast they come: its newest rejected
# jobs and idempotency keys (the younger ones, past neither their days nor their 24 hours,
# would otherwise be unbounded), and its newest history of its rules.
DEFAULT_KEPT_REJECTED_JOBS = 100_000
DEFAULT_KEPT_IDEMPOTENCY_KEYS = 100_000
DEFAULT_KEPT_VERSIONS = 100
DEFAULT_KEPT_PAUSE_CHANGES = 1000
MOST_KEPT_ROWS = 1_000_000_000
MOST_KEPT_HISTORY = 10_000


def _retention_days(text: str) -> float:
    try:
        days = float(text)
    except ValueError:
        days = -1.0
    if not 0 <= days <= 36_500:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number of days (0 to 36500)")
    return days


def _number_kept(noun: str, most: int) -> Callable[[str], int]:
    """The argparse type of an option keeping each user's newest N `noun`: 1 to `most`. None
    kept is refused: `--rejected-days 0 --yes` is how every rejected job goes."""

    def number(text: str) -> int:
        try:
            kept = int(text)
        except ValueError:
            kept = 0
        if not 1 <= kept <= most:
            raise argparse.ArgumentTypeError(f"{text!r} is not a number of {noun} (1 to {most})")
        return kept

    return number


def prune_arguments(command: argparse.ArgumentParser) -> None:
    """`janus prune`'s options; the command runs `prune`."""
    command.add_argument(
        "--rejected-days",
        metavar="DAYS",
        type=_retention_days,
        default=DEFAULT_REJECTED_RETENTION_DAYS,
        help="keep rejected jobs this many days (default %(default)s); accepted jobs are kept "
        "until they finish and their config's retention_days pass",
    )
    command.add_argument(
        "--yes", action="store_true", help="needed with --rejected-days 0 (every rejected job)"
    )
    command.add_argument(
        "--keep-rejected-jobs",
        metavar="N",
        type=_number_kept("rejected jobs", MOST_KEPT_ROWS),
        default=DEFAULT_KEPT_REJECTED_JOBS,
        help="keep each user's newest N rejected jobs at most, however recent the others "
        "(default %(default)s)",
    )
    command.add_argument(
        "--keep-idempotency-keys",
        metavar="N",
        type=_number_kept("idempotency keys", MOST_KEPT_ROWS),
        default=DEFAULT_KEPT_IDEMPOTENCY_KEYS,
        help="keep each user's newest N idempotency keys at most (default %(default)s); a "
        "retry whose key was pruned is decided anew, as after the key's 24 hours",
    )
    command.add_argument(
        "--keep-config-versions",
        metavar="N",
        type=_number_kept("config versions", MOST_KEPT_HISTORY),
        default=DEFAULT_KEPT_VERSIONS,
        help="keep each user's newest N config versions (default %(default)s); the active one"
        " and those a kept pause change names are always kept",
    )
    command.add_argument(
        "--keep-pause-changes",
        metavar="N",
        type=_number_kept("pause changes", MOST_KEPT_HISTORY),
        default=DEFAULT_KEPT_PAUSE_CHANGES,
        help="keep each user's newest N pause changes (default %(default)s)",
    )
    command.set_defaults(run=prune)


def prune(args: argparse.Namespace, database_url: str, out: TextIO) -> None:
    """Delete expired idempotency keys, old rejected jobs, finished jobs past retention, what
    of each user's is beyond its newest N, and tenant buckets full again; a line for each."""
    if args.rejected_days == 0 and not args.yes:
        raise UsageError(
            "--rejected-days 0 deletes every rejected job of every user; run it again with --yes"
        )
    # Each on an autocommit connection: every statement, and every chunk of one user's rows,
    # is its own short transaction.
    with accounts.operator_transaction(database_url, autocommit=True) as conn:
        expired = maintenance.prune_idempotency_keys(conn)
        keys = maintenance.prune_idempotency_keys_beyond(conn, args.keep_idempotency_keys)
    print(
        f"pruned {expired} expired idempotency keys and {keys} beyond each user's newest"
        f" {args.keep_idempotency_keys}",
        file=out,
    )
    # Jobs past the deployment's retention go with their partitions (janus maintain): an age
    # rule deletes only what it asks to forget sooner, and the jobs of random id (stored before
    # migration 0013), which no partition of a span holds.
    kept_by_partitions = JobsPartitioning.from_env().retention
    rejected_for = timedelta(days=args.rejected_days)
    with accounts.operator_transaction(database_url, autocommit=True) as conn:
        old = maintenance.prune_rejected_jobs(
            conn, rejected_for, time_ordered=rejected_for < kept_by_partitions
        )
        rejected = maintenance.prune_rejected_jobs_beyond(conn, args.keep_rejected_jobs)
    print(
        f"pruned {old} rejected jobs older than {args.rejected_days:g} days and {rejected}"
        f" beyond each user's newest {args.keep_rejected_jobs}",
        file=out,
    )
    with accounts.operator_transaction(database_url, autocommit=True) as conn:
        finished = maintenance.prune_finished_jobs(conn, kept_by_partitions)
    print(
        f"pruned {finished} completed, failed or cancelled jobs past their config's retention_days",
        file=out,
    )
    with accounts.operator_transaction(database_url, autocommit=True) as conn:
        changes, versions = maintenance.prune_history(
            conn, args.keep_pause_changes, args.keep_config_versions
        )
    print(
        f"pruned {changes} pause changes beyond each user's newest {args.keep_pause_changes}"
        f" and {versions} config versions beyond each user's newest"
        f" {args.keep_config_versions}",
        file=out,
    )
    with accounts.operator_transaction(database_url, autocommit=True) as conn:
        buckets = maintenance.prune_full_tenant_buckets(conn)
    print(f"pruned {buckets} tenant buckets full again", file=out)
