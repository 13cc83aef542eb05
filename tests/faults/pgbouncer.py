"""A Postgres restart with the service behind PgBouncer in transaction mode.

postgres-fast-restart's fault (scenarios.py), with the service's DATABASE_URL pointing at a
PgBouncer (devtools/pgbouncer.py) in front of the scenario's Postgres, whose server
connections are fewer than the service's clients. PgBouncer stays up while Postgres goes:
the service's connections to it survive, but their queries fail until PgBouncer has logged
in to the new server, and those answers must be 503 with Retry-After, never a 500 or a
hang; then normal answers again within the scenario's recovery limit, the first requests
after a restart while idle succeed, and nothing accepted is lost or over-admitted.
"""

from __future__ import annotations

import time
from pathlib import Path

from devtools.pgbouncer import PgBouncer, give_settings_to_database
from tests.faults.harness import FaultPostgres
from tests.faults.scenarios import (
    Run,
    ScenarioResult,
    _check_first_answers_after_idle_restart,
    _check_recovery,
)

# Server connections: half the service's 4 workers x 2 (JANUS_POOL_SIZE).
SERVER_CONNECTIONS = 4


def postgres_restart_via_pgbouncer(log_dir: Path) -> ScenarioResult:
    """pg_ctl stop -m fast + start under load and while idle, through PgBouncer."""
    bouncers: list[PgBouncer] = []

    def through_pgbouncer(postgres: FaultPostgres) -> str:
        give_settings_to_database(postgres.url)
        bouncers.append(
            PgBouncer.start(postgres.url, log_dir / "pgbouncer", pool_size=SERVER_CONNECTIONS)
        )
        return bouncers[0].url_for(postgres.url)

    try:
        run = Run(
            "postgres-restart-via-pgbouncer",
            "postgres-fast-restart with the service behind PgBouncer (transaction mode)",
            log_dir,
            service_url=through_pgbouncer,
        )
        try:
            with run.load():
                time.sleep(2)
                run.postgres.stop()
                run.postgres.start()
                back = run.clock.now()
                time.sleep(4)
            _check_recovery(run, run.job_attempts(), back, "Postgres was back")

            def restart() -> None:
                run.postgres.stop()
                run.postgres.start()

            _check_first_answers_after_idle_restart(run, restart)
            return run.finish()
        finally:
            run.close()
    finally:
        for bouncer in bouncers:
            bouncer.stop()
