"""The database alone: single jobs decided in groups of N against the bare twin's, by pgbench.

    .venv/bin/python -m devtools.pgbench_groups DATABASE_URL [--groups 1,4,8] [--seconds 10]

DATABASE_URL is a migrated database (`alembic upgrade head`) this adds a user to, whose
buckets never run out, and the twin's schema (bench/twin/twin.sql). With no HTTP at all,
pgbench runs, from `--clients` clients on one hot bucket, prepared:

- `twin`: the statement the bare twin sends for one job (bench/twin/app.py ADMIT);
- `group-N`: the statement Janus sends for a group of N single jobs of one user
  (janus.db.jobs.admission_statement, built by Janus's own code), alone on an autocommit
  connection as janus/db/transactions.py sends it.

It prints each one's transactions/s and decisions/s (N per transaction), and decisions/s over
the twin's of the same round: what group admission can give where the database, not the web
tier, sets the rate. The rounds alternate the statements, so a noisy machine weighs on each alike.
"""

from __future__ import annotations

import argparse
import json
import re
import tempfile
from pathlib import Path
from uuid import UUID

from bench.drivers import SqlLoad, run_pgbench
from bench.pgbench_script import pgbench_binary, pgbench_value
from bench.scenarios import BATCH_NAME, JOB
from bench.twin.app import ADMIT as TWIN_ADMIT
from bench.twin.app import BUCKET as TWIN_BUCKET
from devtools.profile_single import install_twin, make_users
from janus.admission import AdmissionRequest, JobRequest, Mode, Source
from janus.db.jobs import admission_statement


def _script(query: str, params: dict[str, object]) -> tuple[str, dict[str, str]]:
    """`query` as a pgbench script, its placeholders as variables (NULL where None)."""
    values = {name: pgbench_value(value) for name, value in params.items()}

    def placeholder(match: re.Match[str]) -> str:
        name = match.group(1)
        return "NULL" if values[name] is None else f":{name}"

    script = re.sub(r"%\((\w+)\)[sb]", placeholder, query.strip()) + ";\n"
    return script, {name: value for name, value in values.items() if value is not None}


def group_script(user_id: UUID, size: int) -> tuple[str, dict[str, str]]:
    """What Janus sends for `size` single jobs of `user_id` decided as one group."""
    job = JobRequest(
        tenant_id=JOB["tenant_id"],
        priority=JOB["priority"],
        dependencies=JOB["dependencies"],
        payload=json.dumps(JOB["payload"]),
    )
    request = AdmissionRequest(
        user_id=user_id,
        source=Source.DASHBOARD,
        batch_name=BATCH_NAME,
        jobs=(job,),
        mode=Mode.SINGLE,
        idempotency_key=None,
    )
    statement = admission_statement([request] * size)
    return _script(statement.query, dict(statement.params))


def twin_script() -> tuple[str, dict[str, str]]:
    """What the bare twin sends for one job."""
    return _script(TWIN_ADMIT, {"bucket": TWIN_BUCKET, "job": json.dumps(JOB)})


def main(argv: list[str] | None = None) -> None:
    """Parse the arguments and measure."""
    parser = argparse.ArgumentParser(description=__doc__.partition("\n")[0])
    parser.add_argument("database_url")
    parser.add_argument("--groups", default="1,4,8", help="group sizes (1,4,8)")
    parser.add_argument("--clients", type=int, default=8, help="pgbench clients (8)")
    parser.add_argument("--seconds", type=int, default=10, help="per statement and round (10)")
    parser.add_argument("--rounds", type=int, default=2, help="(2)")
    args = parser.parse_args(argv)
    sizes = [int(size) for size in args.groups.split(",")]
    user_id, _ = make_users(args.database_url)
    install_twin(args.database_url)
    loads = [("twin", 1, twin_script())]
    loads += [(f"group-{size}", size, group_script(user_id, size)) for size in sizes]
    workdir = Path(tempfile.mkdtemp(prefix="janus-pgbench-groups-"))
    print(f"{'statement':10} {'round':>5} {'tx/s':>8} {'decisions/s':>12} {'x twin':>7}")
    for round_number in range(1, args.rounds + 1):
        twin_rate = None
        for name, size, (script, variables) in loads:
            path = workdir / f"{name}.sql"
            path.write_text(script)
            load = SqlLoad(
                pgbench_binary(), args.database_url, path, variables, workdir / f"{name}-log"
            )
            result = run_pgbench(
                load,
                duration_s=args.seconds,
                connections=args.clients,
                threads=min(2, args.clients),
                keep_log=False,
            )
            rate = result.requests_per_s * size
            twin_rate = twin_rate or rate
            print(
                f"{name:10} {round_number:>5} {result.requests_per_s:>8,.0f} {rate:>12,.0f}"
                f" {rate / twin_rate:>6.2f}x",
                flush=True,
            )


if __name__ == "__main__":
    main()
