"""The schema keeps the rules that let Janus be distributed by user (docs/scaling.md).

Read from the catalog of a database migrated to head:
- every table holds a user's data (has a `user_id` column), or is listed in
  TABLES_WITHOUT_USER_ID with the reason it may not;
- `user_id` leads every such table's primary key and every unique index (unique constraints
  and partial unique indexes included): a key that does not lead with it cannot be enforced
  on one shard of a distributed table;
- every foreign key from or to such a table pairs `user_id` with `user_id`, so that a row and
  the row it references live on the same shard;
- every function the named queries call that may read or write a table (all but the IMMUTABLE
  ones, pure arithmetic on their arguments) takes the user id, a uuid named p_user_id or
  user_id: the argument a distributed function is routed by.

`schema_violations` returns what breaks them; the tests run it on the real schema and on
tables and functions planted, then rolled back, that break each rule.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Any

import psycopg

from janus.db.sql import load_queries

# Tables with no user_id column, and why each may have none. `users` is not here: its key IS
# user_id, the column every other table references, so it is held to the rules as they are.
TABLES_WITHOUT_USER_ID = {
    # Alembic's bookkeeping: one row, the schema's version, nobody's data. On Citus it stays a
    # local table of the coordinator, where the migrations run.
    "alembic_version",
}

USER_ID_PARAMETERS = ("p_user_id", "user_id")

# Functions of queries.sql that no request runs, and who does. On Citus, jobs's partitions
# are made and dropped on the coordinator, which passes the DDL on to every node.
FUNCTIONS_OF_OPERATORS = {
    "add_jobs_partition": "janus maintain and migration 0024",
    "drop_jobs_partition": "janus maintain",
}

# A name followed by "(": a function call, among other things (the parentheses of a
# subquery's alias, a column list); only the names of functions in the schema are kept.
_CALL = re.compile(r"\b([a-z_][a-z0-9_]*)\s*\(")


def functions_called_by_queries() -> set[str]:
    """The names that precede a parenthesis in janus/db/sql/queries.sql's statements, but
    the functions of operators."""
    return {
        name for statement in load_queries().values() for name in _CALL.findall(statement)
    } - FUNCTIONS_OF_OPERATORS.keys()


def _tables_without_user_id(conn: psycopg.Connection[Any]) -> list[str]:
    rows = conn.execute(
        """
        SELECT c.relname
          FROM pg_class c
         WHERE c.relnamespace = 'public'::regnamespace AND c.relkind IN ('r', 'p')
           AND NOT c.relispartition
           AND NOT EXISTS (SELECT 1 FROM pg_attribute a
                            WHERE a.attrelid = c.oid AND a.attname = 'user_id'
                              AND NOT a.attisdropped)
         ORDER BY c.relname
        """
    ).fetchall()
    return [
        f"{table}: has no user_id column"
        for (table,) in rows
        if table not in TABLES_WITHOUT_USER_ID
    ]


def _tables_without_primary_key(conn: psycopg.Connection[Any]) -> list[str]:
    rows = conn.execute(
        """
        SELECT c.relname
          FROM pg_class c
          JOIN pg_attribute a ON a.attrelid = c.oid AND a.attname = 'user_id'
                             AND NOT a.attisdropped
         WHERE c.relnamespace = 'public'::regnamespace AND c.relkind IN ('r', 'p')
           AND NOT c.relispartition
           AND NOT EXISTS (SELECT 1 FROM pg_index i
                            WHERE i.indrelid = c.oid AND i.indisprimary)
         ORDER BY c.relname
        """
    ).fetchall()
    return [f"{table}: has no primary key" for (table,) in rows]


def _keys_not_led_by_user_id(conn: psycopg.Connection[Any]) -> list[str]:
    # indkey[0] is 0 for an expression: no column leads such an index.
    rows = conn.execute(
        """
        SELECT c.relname, x.relname, i.indisprimary,
               coalesce(a.attname, '(an expression)')
          FROM pg_index i
          JOIN pg_class c ON c.oid = i.indrelid
          JOIN pg_class x ON x.oid = i.indexrelid
          JOIN pg_attribute u ON u.attrelid = c.oid AND u.attname = 'user_id'
                             AND NOT u.attisdropped
          LEFT JOIN pg_attribute a ON a.attrelid = c.oid AND a.attnum = i.indkey[0]
         WHERE c.relnamespace = 'public'::regnamespace AND c.relkind IN ('r', 'p')
           AND NOT c.relispartition AND i.indisunique
           AND i.indkey[0] <> u.attnum
         ORDER BY c.relname, x.relname
        """
    ).fetchall()
    return [
        f"{table}: {'primary key' if primary else 'unique index'} {index} leads with "
        f"{first}, not user_id"
        for table, index, primary, first in rows
    ]


def _foreign_keys_without_user_id(conn: psycopg.Connection[Any]) -> list[str]:
    # A key passes when some position pairs the referencing table's user_id with the
    # referenced table's.
    rows = conn.execute(
        """
        SELECT f.conrelid::regclass::text, f.conname, f.confrelid::regclass::text
          FROM pg_constraint f
         WHERE f.contype = 'f' AND f.connamespace = 'public'::regnamespace
           AND NOT EXISTS (
                   SELECT 1
                     FROM unnest(f.conkey, f.confkey) AS k(referencing, referenced)
                     JOIN pg_attribute a ON a.attrelid = f.conrelid
                                        AND a.attnum = k.referencing
                     JOIN pg_attribute b ON b.attrelid = f.confrelid
                                        AND b.attnum = k.referenced
                    WHERE a.attname = 'user_id' AND b.attname = 'user_id')
         ORDER BY 1, 2
        """
    ).fetchall()
    return [
        f"{table}: foreign key {name} to {referenced} does not pair user_id with user_id"
        for table, name, referenced in rows
    ]


def _functions_without_user_id(conn: psycopg.Connection[Any], names: Iterable[str]) -> list[str]:
    # Every overload of each name defined in the schema; pg_proc's argument arrays cover the
    # OUT columns of RETURNS TABLE too (proargmodes), which are not arguments.
    rows = conn.execute(
        """
        SELECT p.oid::regprocedure::text
          FROM pg_proc p
         WHERE p.pronamespace = 'public'::regnamespace AND p.proname = ANY (%(names)s)
           AND p.provolatile <> 'i'
           AND NOT EXISTS (
                   SELECT 1
                     FROM unnest(coalesce(p.proallargtypes, p.proargtypes::oid[]),
                                 p.proargnames,
                                 coalesce(p.proargmodes,
                                          array_fill('i'::"char", ARRAY[p.pronargs::integer])))
                          AS g(type, name, mode)
                    WHERE g.mode IN ('i', 'b') AND g.type = 'uuid'::regtype
                      AND g.name = ANY (%(parameters)s))
         ORDER BY 1
        """,
        {"names": sorted(names), "parameters": list(USER_ID_PARAMETERS)},
    ).fetchall()
    return [
        f"{function}: takes no uuid argument named {' or '.join(USER_ID_PARAMETERS)}"
        for (function,) in rows
    ]


def schema_violations(conn: psycopg.Connection[Any], called_functions: Iterable[str]) -> list[str]:
    """Every way the schema on `conn` breaks the rules of distribution by user, one line each;
    `called_functions` names the functions requests call."""
    return [
        *_tables_without_user_id(conn),
        *_tables_without_primary_key(conn),
        *_keys_not_led_by_user_id(conn),
        *_foreign_keys_without_user_id(conn),
        *_functions_without_user_id(conn, called_functions),
    ]


def test_the_schema_at_head_keeps_the_rules(db: psycopg.Connection[Any]) -> None:
    assert schema_violations(db, functions_called_by_queries()) == []


def test_the_queries_call_the_functions_requests_run(db: psycopg.Connection[Any]) -> None:
    # The parse finds them: a check of no function would pass whatever the schema.
    called = functions_called_by_queries()
    assert {"admit_requests", "hand_out_jobs", "finish_jobs", "authenticate"} <= called


def test_a_schema_that_breaks_each_rule_is_reported(db: psycopg.Connection[Any]) -> None:
    with db.transaction(force_rollback=True):
        db.execute(
            """
            CREATE TABLE shared_names (name text PRIMARY KEY);
            CREATE TABLE keyless (user_id uuid NOT NULL, note text);
            CREATE TABLE id_first (id uuid, user_id uuid, PRIMARY KEY (id, user_id));
            CREATE TABLE unique_name (user_id uuid, name text, PRIMARY KEY (user_id, name),
                                      CONSTRAINT unique_name_alone UNIQUE (name, user_id));
            CREATE UNIQUE INDEX one_queued_job ON jobs (job_id) WHERE state = 'queued';
            CREATE UNIQUE INDEX one_lower_name ON unique_name (lower(name));
            CREATE TABLE job_notes (user_id uuid, job_id uuid, note text,
                                    PRIMARY KEY (user_id, job_id, note),
                                    CONSTRAINT job_notes_name FOREIGN KEY (note)
                                        REFERENCES shared_names (name),
                                    CONSTRAINT job_notes_swapped FOREIGN KEY (job_id, user_id)
                                        REFERENCES id_first (user_id, id));
            CREATE FUNCTION notes_of(p_owner uuid) RETURNS bigint
                LANGUAGE sql STABLE AS 'SELECT count(*) FROM job_notes';
            CREATE FUNCTION notes_by_text(p_user_id text) RETURNS bigint
                LANGUAGE sql STABLE AS 'SELECT count(*) FROM job_notes';
            """
        )
        found = schema_violations(db, functions_called_by_queries() | {"notes_of", "notes_by_text"})
    assert found == [
        "shared_names: has no user_id column",
        "keyless: has no primary key",
        "id_first: primary key id_first_pkey leads with id, not user_id",
        "jobs: unique index one_queued_job leads with job_id, not user_id",
        "unique_name: unique index one_lower_name leads with (an expression), not user_id",
        "unique_name: unique index unique_name_alone leads with name, not user_id",
        "job_notes: foreign key job_notes_name to shared_names does not pair user_id with user_id",
        "job_notes: foreign key job_notes_swapped to id_first does not pair user_id with user_id",
        "notes_by_text(text): takes no uuid argument named p_user_id or user_id",
        "notes_of(uuid): takes no uuid argument named p_user_id or user_id",
    ]
