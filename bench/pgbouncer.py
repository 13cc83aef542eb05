"""`make bench BENCH_ARGS=--pgbouncer`: the single and batch scenarios again, through PgBouncer.

After the chosen scenarios have run on the direct connection, PgBouncer in transaction mode
(devtools/pgbouncer.py, as docs/operations.md sets it up) is started in front of the same
database, with as many server connections as the service has clients, so that the
difference is PgBouncer's hop and not a smaller pool; a second gunicorn connects through
it, and every chosen scenario Janus admits over HTTP (single, partial and atomic) runs again.
The jobs/s both ways and their ratio are printed and written to pgbouncer.json.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Mapping, Sequence
from pathlib import Path

from bench.common import say
from bench.measure import Bench
from bench.results import ScenarioResult
from bench.scenarios import Scenario
from devtools.pgbouncer import PgBouncer, give_settings_to_database
from devtools.service import Service
from janus.settings import Settings

SERVICE_START_TIMEOUT_S = 30


def bounceable(scenario: Scenario) -> bool:
    """Whether `scenario` is measured through PgBouncer too: the ones Janus admits."""
    return scenario.admits


def compare(
    bench: Bench,
    chosen: Sequence[Scenario],
    direct: Mapping[str, ScenarioResult],
    run_dir: Path,
) -> list[dict[str, object]]:
    """Run the bounceable scenarios of `chosen` through PgBouncer; print and return, per
    scenario, the jobs/s direct and through it and their ratio."""
    scenarios = [s for s in chosen if bounceable(s) and s.name in direct]
    if not scenarios:
        say("--pgbouncer: no single or batch scenario was chosen")
        return []
    give_settings_to_database(bench.database_url)
    workers = bench.service.workers or len(bench.service.worker_pids())
    clients = workers * Settings(database_url=bench.database_url).pool_size
    rows: list[dict[str, object]] = []
    with (
        PgBouncer.start(
            bench.database_url, bench.workdir / "pgbouncer", pool_size=clients
        ) as bouncer,
        Service.start(
            bouncer.url_for(bench.database_url),
            run_dir / "gunicorn-pgbouncer.log",
            workers=workers,
            new_session=True,
            timeout_s=SERVICE_START_TIMEOUT_S,
        ) as service,
    ):
        say(f"through PgBouncer ({clients} server connections), gunicorn of {workers} workers")
        bounced = dataclasses.replace(
            bench, service=service, cpu_roots={**bench.cpu_roots, "app": service.master_pid}
        )
        for scenario in scenarios:
            result = bounced.measure(scenario)
            before = direct[scenario.name].jobs_per_s or 0.0
            after = result.jobs_per_s or 0.0
            rows.append(
                {
                    "scenario": scenario.name,
                    "direct_jobs_per_s": round(before, 1),
                    "pgbouncer_jobs_per_s": round(after, 1),
                    "ratio": round(after / before, 3) if before else None,
                    "pgbouncer_p99_ms": result.load.latency_ms["p99"],
                    "outcomes": dict(result.load.outcomes),
                }
            )
    print(table(rows))
    (run_dir / "pgbouncer.json").write_text(json.dumps(rows, indent=2) + "\n")
    return rows


def table(rows: Sequence[Mapping[str, object]]) -> str:
    """The comparison as a small table."""
    lines = [
        "",
        "Through PgBouncer (transaction mode) vs direct",
        f"{'scenario':<16} {'direct jobs/s':>14} {'pgbouncer jobs/s':>17} {'ratio':>6}",
    ]
    for row in rows:
        ratio = row["ratio"]
        lines.append(
            f"{row['scenario']!s:<16} {row['direct_jobs_per_s']!s:>14} "
            f"{row['pgbouncer_jobs_per_s']!s:>17} {'-' if ratio is None else f'{ratio:.2f}':>6}"
        )
    return "\n".join(lines)
