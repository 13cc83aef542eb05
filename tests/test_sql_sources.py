"""The SQL files are the truth: janus/db/sql/ is what the database at head holds, and migrations
undo exactly what they do.

See alembic/README for the convention these tests hold the migrations to.
"""

from __future__ import annotations

import re
from typing import Any
from uuid import UUID

import alembic.command
import alembic.config
import psycopg
import pytest
from alembic.script import ScriptDirectory

from janus.db import queries
from janus.db.sql import (
    SqlFileError,
    defined_object,
    function_sources,
    load_queries,
    parse_queries,
    view_sources,
)
from janus.settings import sqlalchemy_url
from tests.conftest import REPO_ROOT

VERSIONS_DIR = REPO_ROOT / "alembic" / "versions"


def _revisions() -> list[str]:
    """Every revision oldest first (`alembic history` lists them newest first)."""
    script = ScriptDirectory.from_config(alembic.config.Config(str(REPO_ROOT / "alembic.ini")))
    return [revision.revision for revision in reversed(list(script.walk_revisions()))]


# Read from alembic/versions, so that a new migration (or a renumbered one) needs no edit here.
REVISIONS = _revisions()

# Janus's functions: those of the public schema that no extension installed.
_FUNCTIONS = """
SELECT p.proname, p.oid::regprocedure::text, pg_get_functiondef(p.oid)
  FROM pg_proc p
 WHERE p.pronamespace = 'public'::regnamespace
   AND NOT EXISTS (SELECT 1 FROM pg_depend d
                    WHERE d.classid = 'pg_proc'::regclass AND d.objid = p.oid
                      AND d.deptype = 'e')
 ORDER BY 2
"""


def alembic_config(database_url: str) -> alembic.config.Config:
    """The project's alembic.ini, pointed at `database_url` (env.py prefers it to DATABASE_URL)."""
    config = alembic.config.Config(str(REPO_ROOT / "alembic.ini"))
    url = sqlalchemy_url({"DATABASE_URL": database_url})
    # configparser interpolation: a percent-encoded password must not be read as %(name)s.
    config.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    return config


# Janus's views: those of the public schema that no extension installed.
_VIEWS = """
SELECT c.relname, pg_get_viewdef(c.oid)
  FROM pg_class c
 WHERE c.relnamespace = 'public'::regnamespace AND c.relkind = 'v'
   AND NOT EXISTS (SELECT 1 FROM pg_depend d
                    WHERE d.classid = 'pg_class'::regclass AND d.objid = c.oid
                      AND d.deptype = 'e')
 ORDER BY 1
"""


def functions(conn: psycopg.Connection[Any]) -> dict[str, tuple[str, str]]:
    """Janus's functions by signature: (name, pg_get_functiondef)."""
    return {signature: (name, text) for name, signature, text in conn.execute(_FUNCTIONS)}


def views(conn: psycopg.Connection[Any]) -> dict[str, str]:
    """Janus's views by name: pg_get_viewdef."""
    return dict(conn.execute(_VIEWS).fetchall())


def schema(database_url: str) -> dict[str, list[tuple[Any, ...]]]:
    """Everything a migration may create in the public schema, as comparable text."""
    catalog_queries = {
        "functions": _FUNCTIONS,
        "relations": """
            SELECT c.relname, c.relkind FROM pg_class c
             WHERE c.relnamespace = 'public'::regnamespace ORDER BY 1""",
        "columns": """
            SELECT c.relname, a.attname, format_type(a.atttypid, a.atttypmod), a.attnotnull,
                   pg_get_expr(ad.adbin, ad.adrelid), co.collname
              FROM pg_attribute a
              JOIN pg_class c ON c.oid = a.attrelid
              LEFT JOIN pg_attrdef ad ON ad.adrelid = a.attrelid AND ad.adnum = a.attnum
              LEFT JOIN pg_collation co ON co.oid = a.attcollation
             WHERE c.relnamespace = 'public'::regnamespace AND a.attnum > 0
               AND NOT a.attisdropped
             ORDER BY 1, 2""",
        "constraints": """
            SELECT conrelid::regclass::text, conname, pg_get_constraintdef(oid)
              FROM pg_constraint WHERE connamespace = 'public'::regnamespace ORDER BY 1, 2""",
        "indexes": """
            SELECT indexname, indexdef FROM pg_indexes WHERE schemaname = 'public' ORDER BY 1""",
        "views": """
            SELECT viewname, definition FROM pg_views WHERE schemaname = 'public' ORDER BY 1""",
    }
    with psycopg.connect(database_url, autocommit=True) as conn:
        return {
            kind: _spans_alike(conn.execute(query).fetchall())
            for kind, query in catalog_queries.items()
        }


_SPAN_PARTITION = re.compile(r"jobs_\d{8}_\d{4}")
_UUID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")


def _spans_alike(rows: list[tuple[Any, ...]]) -> list[tuple[Any, ...]]:
    """`rows` with the partitions of jobs for spans of time (migration 0024) told apart by
    none of their names or bounds: they are made for the spans around the moment of the
    migration, which differs from one run to the next. Each distinct row once, sorted."""
    alike = {
        tuple(
            _UUID.sub("<id>", _SPAN_PARTITION.sub("jobs_<span>", v)) if isinstance(v, str) else v
            for v in row
        )
        for row in rows
    }
    return sorted(alike, key=repr)


# The named queries


def test_every_query_of_queries_sql_is_a_constant_of_janus_db_queries() -> None:
    """Each `-- name --` is bound to the constant NAME, and no constant lacks its query, but
    the one made from another: the transaction's own hold of an atomic batch's locks."""
    derived = {"LOCK_BUCKETS_TO_COMMIT": queries.LOCK_BUCKETS_FOR_ATOMIC}
    constants = {
        name: value
        for name, value in vars(queries).items()
        if name.isupper() and not name.startswith("_") and name not in derived
    }
    assert (
        derived["LOCK_BUCKETS_TO_COMMIT"].replace("pg_advisory_lock(", "pg_advisory_xact_lock(")
        == queries.LOCK_BUCKETS_TO_COMMIT
    )
    loaded = load_queries()
    assert sorted(name.lower() for name in constants) == sorted(loaded)
    for name, value in constants.items():
        assert value == loaded[name.lower()]


def test_a_query_is_its_statement_without_the_comment_lines_below_its_name() -> None:
    """The description is for readers; comments inside the statement stay in it."""
    text = (
        "-- The file's own header.\n\n"
        "-- first --\n-- What it does.\n--\n-- Why.\nSELECT 1\n  -- kept\n  FROM t\n\n"
        "-- second_2 --\nSELECT %(x)s\n"
    )
    assert parse_queries(text) == {
        "first": "SELECT 1\n  -- kept\n  FROM t",
        "second_2": "SELECT %(x)s",
    }


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ("SELECT 0\n-- first --\nSELECT 1\n", "SQL before the first"),
        ("-- first --\nSELECT 1\n-- first --\nSELECT 2\n", "defined twice"),
        ("-- first --\n-- Only a description.\n\n-- second --\nSELECT 2\n", "has no statement"),
    ],
)
def test_a_malformed_queries_file_fails_at_load(text: str, problem: str) -> None:
    """A slip in the file fails the import, not the first request that runs the query."""
    with pytest.raises(SqlFileError, match=problem):
        parse_queries(text)


# The functions


def test_each_definition_file_is_one_create_or_replace_named_after_it() -> None:
    """janus/db/sql/<name>.sql, and each frozen copy <revision>_<name>.sql, define <name>()
    or the view <name>; the loader tells the two apart."""
    functions_, views_ = function_sources(), view_sources()
    # Found through importlib.resources, as the package reads them.
    assert {"activate_config", "admit_jobs", "admit_jobs_once"} <= set(functions_)
    assert set(views_) == {"token_buckets_now", "tenant_buckets_now"}
    frozen = {path.name: path.read_text(encoding="utf-8") for path in VERSIONS_DIR.glob("*.sql")}
    for file_name, text, kind in [
        *((f"{name}.sql", text, "FUNCTION") for name, text in functions_.items()),
        *((f"{name}.sql", text, "VIEW") for name, text in views_.items()),
        *((name, text, None) for name, text in frozen.items()),
    ]:
        defined = defined_object(text)
        assert defined is not None, f"{file_name} is not one CREATE OR REPLACE FUNCTION or VIEW"
        assert kind in (None, defined[0]), (file_name, defined)
        assert re.fullmatch(rf"(\d{{4}}_)?{defined[1]}\.sql", file_name), (file_name, defined)


def test_the_database_at_head_holds_exactly_the_functions_of_janus_db_sql(
    db: psycopg.Connection[Any],
) -> None:
    """Every Janus function has a file, and re-applying every file changes nothing.

    Applying a file in a rolled-back transaction and comparing pg_get_functiondef before and
    after is exact (body, arguments, result, attributes) and independent of how the file lays
    out its signature: a migration that forgot to apply a changed file fails here.
    """
    sources = function_sources()
    at_head = functions(db)
    assert sorted(name for name, _ in at_head.values()) == sorted(sources), (
        "each Janus function in the database needs its file in janus/db/sql/, and only one "
        "function of that name"
    )
    with db.transaction(force_rollback=True):
        for text in sources.values():
            db.execute(text)
        reapplied = functions(db)
    for signature, (name, definition) in reapplied.items():
        assert signature in at_head, (
            f"janus/db/sql/{name}.sql defines {signature}, which the migrations do not install"
        )
        assert definition == at_head[signature][1], (
            f"janus/db/sql/{name}.sql differs from {signature} at alembic head: "
            "does a migration apply a frozen copy of it? (alembic/README)"
        )


def test_activate_config_has_no_default_of_its_own_for_the_queue_settings(
    db: psycopg.Connection[Any],
) -> None:
    """max_attempts and retention_days default in janus/schemas.py only: the function takes
    them from its caller (the previous release's call passes them too)."""
    [(arguments,)] = db.execute(
        "SELECT pg_get_function_arguments('activate_config'::regproc)"
    ).fetchall()
    assert "p_max_attempts integer, p_retention_days integer, p_mode text DEFAULT" in arguments


def test_the_database_at_head_holds_exactly_the_views_of_janus_db_sql(
    db: psycopg.Connection[Any],
) -> None:
    """Every Janus view has its file, and re-applying every file changes nothing (compared
    as pg_get_viewdef, the query as Postgres keeps it)."""
    sources = view_sources()
    at_head = views(db)
    assert sorted(at_head) == sorted(sources), "each Janus view needs its file in janus/db/sql/"
    with db.transaction(force_rollback=True):
        for text in sources.values():
            db.execute(text)
        reapplied = views(db)
    for name, definition in reapplied.items():
        assert definition == at_head[name], (
            f"janus/db/sql/{name}.sql differs from the view {name} at alembic head: "
            "does a migration apply a frozen copy of it? (alembic/README)"
        )


def test_downgrading_each_migration_restores_what_the_one_before_left(database_url: str) -> None:
    """head -> base one step at a time, then base -> head: each level's schema is the same
    both ways, so every downgrade undoes its upgrade (0005's restores 0002's admit_jobs())."""
    config = alembic_config(database_url)
    going_down = {REVISIONS[-1]: schema(database_url)}
    for revision in [*reversed(REVISIONS[:-1]), "base"]:
        alembic.command.downgrade(config, revision)
        going_down[revision] = schema(database_url)

    at_base = going_down["base"]
    assert [name for name, _ in at_base["relations"]] == ["alembic_version", "alembic_version_pkc"]
    assert at_base["functions"] == []

    for revision in REVISIONS:
        alembic.command.upgrade(config, revision)
        assert schema(database_url) == going_down[revision], f"at revision {revision}"


def test_migrations_apply_only_their_frozen_sql_files() -> None:
    """No migration reads janus/db/sql/: the live files change later, migrations must not."""
    for path in VERSIONS_DIR.glob("*.py"):
        text = path.read_text(encoding="utf-8")
        assert "janus/db/sql" not in text and "janus.db.sql" not in text, path.name
        for file_name in re.findall(r'execute_sql_file\("([^"]+)"\)', text):
            assert (VERSIONS_DIR / file_name).is_file(), (path.name, file_name)


def test_migration_0006_puts_the_accepted_jobs_it_finds_in_the_queue(database_url: str) -> None:
    """Jobs stored before the queue existed: accepted ones become queued (and claimable),
    rejected ones get no state, and the new primary key holds them all."""
    config = alembic_config(database_url)
    alembic.command.downgrade(config, "0005")
    with psycopg.connect(database_url, autocommit=True) as conn:
        row = conn.execute("INSERT INTO users (name) VALUES ('old') RETURNING user_id").fetchone()
        assert row is not None
        user_id = row[0]
        conn.execute(
            "SELECT activate_config(%s, false, 1::smallint, 0::numeric, 'reject',"
            ' \'{"openai": {"capacity": 3, "refill_per_second": 0}}\'::json)',
            [user_id],
        )
        decided = conn.execute(
            "SELECT job_id, status FROM admit_jobs(%s, 'system', 'b', %s::text[],"
            " %s::smallint[], %s::jsonb[], %s::json[], false)",
            [user_id, ["t", "t"], [5, 5], ['{"openai": 2}', '{"openai": 2}'], ["{}", "{}"]],
        ).fetchall()
    assert [status for _, status in decided] == ["Accepted", "Rejected"]

    alembic.command.upgrade(config, "head")

    with psycopg.connect(database_url, autocommit=True) as conn:
        states: dict[UUID, str | None] = dict(
            conn.execute("SELECT job_id, state FROM jobs").fetchall()
        )
        assert states == {decided[0][0]: "queued", decided[1][0]: None}
        claimed = conn.execute(
            "SELECT job_id, attempt FROM hand_out_jobs(%s, 10, 60, NULL, NULL, NULL)"
            " WHERE job_id IS NOT NULL",
            [user_id],
        ).fetchall()
        assert claimed == [(decided[0][0], 1)]
        key = conn.execute(
            "SELECT pg_get_constraintdef(oid) FROM pg_constraint WHERE conname = 'jobs_pkey'"
        ).fetchone()
        assert key == ("PRIMARY KEY (user_id, job_id)",)


def test_migration_0009_moves_the_pause_onto_the_user_and_back(database_url: str) -> None:
    """A user paused by its active version stays paused (recorded as one change), a version
    that said false keeps saying it; the downgrade puts the state back on the active version."""
    config = alembic_config(database_url)
    before = REVISIONS[REVISIONS.index("0009") - 1]
    alembic.command.downgrade(config, before)
    # max_attempts and retention_days given: from 0015 on, activate_config() has no default.
    activate = (
        "SELECT activate_config(%s, %s, 1::smallint, 0::numeric, 'reject',"
        ' \'{"openai": {"capacity": 3, "refill_per_second": 0}}\'::json, 3, 7)'
    )
    with psycopg.connect(database_url, autocommit=True) as conn:
        users = {}
        for name, paused in (("paused", True), ("running", False)):
            row = conn.execute(
                "INSERT INTO users (name) VALUES (%s) RETURNING user_id", [name]
            ).fetchone()
            assert row is not None
            users[name] = row[0]
            conn.execute(activate, [users[name], paused])

    alembic.command.upgrade(config, "head")

    with psycopg.connect(database_url, autocommit=True) as conn:
        flags: dict[str, bool] = dict(conn.execute("SELECT name, paused FROM users").fetchall())
        assert flags == {"paused": True, "running": False}
        changes = conn.execute("SELECT user_id, paused, config_version FROM pause_changes")
        assert changes.fetchall() == [(users["paused"], True, None)]
        stated: dict[UUID, bool | None] = dict(
            conn.execute("SELECT user_id, paused FROM configs").fetchall()
        )
        assert stated == {users["paused"]: True, users["running"]: False}
        # Resume one, and leave `paused` out of a new version of the other.
        conn.execute("SELECT set_paused(%s, false)", [users["paused"]])
        conn.execute(activate, [users["running"], None])
        conn.execute("SELECT set_paused(%s, true)", [users["running"]])

    alembic.command.downgrade(config, before)

    with psycopg.connect(database_url, autocommit=True) as conn:
        active = conn.execute(
            "SELECT u.name, c.version, c.paused FROM configs c JOIN users u USING (user_id)"
            " WHERE c.is_active ORDER BY 1"
        ).fetchall()
        assert active == [("paused", 1, False), ("running", 2, True)]


def test_migration_0013_gives_new_jobs_time_ordered_ids_and_back(database_url: str) -> None:
    """Up: admit_jobs() stores version-7 ids from new_job_id(); down: random ones again
    (version 4), and new_job_id() is gone."""
    config = alembic_config(database_url)
    alembic.command.downgrade(config, "0012")
    admit = (
        "SELECT job_id FROM admit_jobs(%s, 'system', 'b', %s::text[], %s::smallint[],"
        " %s::jsonb[], %s::json[], false)"
    )
    with psycopg.connect(database_url, autocommit=True) as conn:
        row = conn.execute("INSERT INTO users (name) VALUES ('u') RETURNING user_id").fetchone()
        assert row is not None
        user_id = row[0]
        conn.execute(
            "SELECT activate_config(%s, false, 1::smallint, 0::numeric, 'reject',"
            ' \'{"openai": {"capacity": 9, "refill_per_second": 0}}\'::json)',
            [user_id],
        )

        def admitted_versions() -> list[int]:
            jobs = ["t", "t"], [5, 5], ['{"openai": 1}'] * 2, ["{}", "{}"]
            return [job_id.version for (job_id,) in conn.execute(admit, [user_id, *jobs])]

        assert conn.execute("SELECT to_regproc('new_job_id')").fetchone() == (None,)
        assert admitted_versions() == [4, 4]
        alembic.command.upgrade(config, "0013")
        assert admitted_versions() == [7, 7]
        alembic.command.downgrade(config, "0012")
        assert admitted_versions() == [4, 4]
        assert conn.execute("SELECT to_regproc('new_job_id')").fetchone() == (None,)
