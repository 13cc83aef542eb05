"""`janus-worker MODULE:FUNCTION`: run a handler on Janus's jobs until SIGTERM or SIGINT.

    janus-worker app.tasks:handle --concurrency 8

The handler is imported from MODULE (the current directory is searched first, as for
`python -m`); a coroutine function runs on the asyncio worker, anything else in threads.
Janus's address and the credential come from JANUS_URL and JANUS_API_KEY (or JANUS_USER_ID).
Exit status: 0 once stopped by a signal, 1 when Janus refused the worker (a bad key or
filter), 2 for a bad command line.
"""

from __future__ import annotations

import argparse
import asyncio
import importlib
import inspect
import logging
import os
import sys
from collections.abc import Callable, Sequence
from typing import Any

from janus_client._runtime import MAX_CLAIM_LIMIT, MAX_LEASE_SECONDS, WorkerSettings
from janus_client.aio_worker import AsyncWorker
from janus_client.errors import JanusError
from janus_client.worker import Worker

DEFAULTS = WorkerSettings()


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="janus-worker",
        description="Run a handler on the jobs Janus hands out, until SIGTERM or SIGINT.",
    )
    parser.add_argument(
        "target", metavar="MODULE:FUNCTION", help="the handler, e.g. app.tasks:handle"
    )
    parser.add_argument(
        "-c",
        "--concurrency",
        type=int,
        default=DEFAULTS.concurrency,
        help="jobs run at once: threads, or asyncio tasks for a coroutine "
        f"({DEFAULTS.concurrency})",
    )
    parser.add_argument(
        "--lease-seconds",
        type=int,
        default=DEFAULTS.lease_seconds,
        help=f"each claim's lease, 1 to {MAX_LEASE_SECONDS}, renewed at a third "
        f"({DEFAULTS.lease_seconds})",
    )
    parser.add_argument(
        "--claim-limit",
        type=int,
        default=None,
        help=f"jobs a claim asks for at most, 1 to {MAX_CLAIM_LIMIT} "
        "(the concurrency, at most 100)",
    )
    parser.add_argument(
        "--claimers",
        type=int,
        default=None,
        help="claims in flight at once (enough to fill every free slot)",
    )
    parser.add_argument(
        "--grace-seconds",
        type=float,
        default=DEFAULTS.grace_seconds,
        help="after SIGTERM, how long running jobs may finish before they are given back "
        f"({DEFAULTS.grace_seconds:g})",
    )
    parser.add_argument("--tenant-id", help="only this tenant's jobs")
    parser.add_argument("--batch-name", help="only this batch's jobs")
    parser.add_argument(
        "--dependency",
        dest="dependencies",
        action="append",
        metavar="NAME",
        help="only jobs that call none but these dependencies (repeat it for each)",
    )
    parser.add_argument(
        "--complete-batch",
        type=int,
        default=DEFAULTS.complete_batch,
        help=f"completions sent in one call at most ({DEFAULTS.complete_batch})",
    )
    parser.add_argument(
        "--complete-linger",
        type=float,
        default=DEFAULTS.complete_linger,
        help="seconds a completion waits for others while handlers still run "
        f"({DEFAULTS.complete_linger:g})",
    )
    parser.add_argument(
        "--stats-interval",
        type=float,
        default=None,
        help="log the counters every this many seconds (never)",
    )
    parser.add_argument(
        "--log-level",
        default="INFO",
        choices=["DEBUG", "INFO", "WARNING", "ERROR"],
        help="INFO logs a line per job (INFO)",
    )
    return parser


def load_handler(target: str) -> Callable[..., Any]:
    """The function MODULE:FUNCTION names (ValueError with the reason when it does not)."""
    module_name, _, attribute = target.partition(":")
    if not module_name or not attribute:
        raise ValueError(f"{target!r} is not MODULE:FUNCTION")
    if os.getcwd() not in sys.path:
        sys.path.insert(0, os.getcwd())
    try:
        found: Any = importlib.import_module(module_name)
    except ImportError as error:
        raise ValueError(f"cannot import {module_name}: {error}") from error
    for name in attribute.split("."):
        found = getattr(found, name, None)
    if not callable(found):
        raise ValueError(f"{module_name} has no function {attribute}")
    return found  # type: ignore[no-any-return]


def main(argv: Sequence[str] | None = None) -> int:
    """The console script; its exit status."""
    parser = _parser()
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=args.log_level, format="%(asctime)s %(levelname)s %(name)s %(message)s"
    )
    if args.log_level != "DEBUG":  # httpx logs every request at INFO
        logging.getLogger("httpx").setLevel(logging.WARNING)
    try:
        handler = load_handler(args.target)
        options: dict[str, Any] = {
            "concurrency": args.concurrency,
            "lease_seconds": args.lease_seconds,
            "claim_limit": args.claim_limit,
            "claimers": args.claimers,
            "grace_seconds": args.grace_seconds,
            "tenant_id": args.tenant_id,
            "batch_name": args.batch_name,
            "dependencies": None if args.dependencies is None else tuple(args.dependencies),
            "complete_batch": args.complete_batch,
            "complete_linger": args.complete_linger,
            "stats_interval": args.stats_interval,
        }
        run: Callable[[], None]
        if inspect.iscoroutinefunction(handler):
            async_worker = AsyncWorker(handler, **options)
            run = lambda: asyncio.run(async_worker.run())  # noqa: E731
        else:
            run = Worker(handler, **options).run
    except ValueError as error:  # a bad target or setting, or no credential in the environment
        parser.error(str(error))
    try:
        run()
    except JanusError as error:
        print(f"janus-worker: {error}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
