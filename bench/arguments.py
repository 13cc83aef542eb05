"""The command line of `make bench` (python -m bench.run): every option and its default."""

from __future__ import annotations

import argparse
import os
from collections.abc import Sequence

from bench.measure import NOISY_OTHER_PERCENT
from bench.scenarios import (
    DEFAULT_DURATION_S,
    SCENARIOS,
    SOAK_MINUTES,
    SOAK_PREFILL_ROWS,
    SOAK_SCENARIO,
)


def parse(argv: Sequence[str] | None) -> argparse.Namespace:
    """`make bench`'s arguments, checked; --workers defaults to WEB_CONCURRENCY when set."""
    parser = argparse.ArgumentParser(
        prog="make bench",
        description="Load-test Janus and its ceilings; print one table, write JSON.",
    )
    parser.add_argument(
        "--duration",
        type=float,
        default=None,
        help=f"seconds per scenario (default {DEFAULT_DURATION_S:g}, or a scenario's own: "
        + ", ".join(f"{s.name} {s.duration_s:g}" for s in SCENARIOS if s.duration_s)
        + ")",
    )
    parser.add_argument("--warmup", type=float, default=2, help="unrecorded seconds first (2)")
    parser.add_argument(
        "--connections",
        type=int,
        default=8,
        help="wrk connections = pgbench clients (8), but in scenarios with a count of their "
        "own: " + ", ".join(s.name for s in SCENARIOS if s.connections),
    )
    parser.add_argument("--threads", type=int, default=2, help="wrk and pgbench threads (2)")
    parser.add_argument(
        "--workers",
        type=int,
        default=None,
        help="gunicorn workers (default: WEB_CONCURRENCY, else gunicorn.conf.py's)",
    )
    parser.add_argument(
        "--only",
        type=lambda text: [name.strip() for name in text.split(",") if name.strip()],
        default=None,
        metavar="NAME,...",
        help="run only these scenarios: " + ", ".join(s.name for s in SCENARIOS),
    )
    parser.add_argument(
        "--timeout", type=float, default=10, help="a request slower than this is an error (10)"
    )
    parser.add_argument(
        "--noisy-retries",
        type=int,
        default=1,
        help="measure a scenario again this often while other processes take over "
        f"{NOISY_OTHER_PERCENT:g}%% of a core, keep the quietest run (1)",
    )
    parser.add_argument(
        "--soak",
        action="store_true",
        help=f"then {SOAK_MINUTES} minutes of {SOAK_SCENARIO}, jobs/s reported per minute",
    )
    parser.add_argument(
        "--soak-minutes",
        type=int,
        default=SOAK_MINUTES,
        help=f"minutes of the soak ({SOAK_MINUTES})",
    )
    parser.add_argument(
        "--soak-prefill",
        type=int,
        default=SOAK_PREFILL_ROWS,
        metavar="ROWS",
        help="before the soak, add jobs of its user until the jobs table holds ROWS "
        f"(default {SOAK_PREFILL_ROWS:,}; 0: none)",
    )
    parser.add_argument(
        "--pgbouncer",
        action="store_true",
        help="then run the chosen single and batch scenarios again through PgBouncer in "
        "transaction mode (`make pgbouncer`), and print the jobs/s ratio to direct",
    )
    parser.add_argument(
        "--strict",
        action="store_true",
        help="exit 1 when a target FAILs or an answer is unexpected (default: only report)",
    )
    args = parser.parse_args(argv)
    known = {scenario.name for scenario in SCENARIOS}
    unknown = sorted(set(args.only or []) - known)
    if unknown:
        parser.error(f"unknown scenario {', '.join(unknown)}; choose from {', '.join(known)}")
    if args.soak_prefill < 0:
        parser.error("--soak-prefill must be 0 or more")
    if args.connections < args.threads or args.threads < 1:
        parser.error("--connections must be at least --threads, and --threads at least 1")
    if args.workers is None and os.environ.get("WEB_CONCURRENCY", "").strip():
        args.workers = int(os.environ["WEB_CONCURRENCY"])
    return args
