"""The SQL that Janus runs, kept as SQL files shipped with the package.

- `<function>.sql`: the live definition of each function, one `CREATE OR REPLACE FUNCTION`
  per file, named after the function; `<view>.sql`, of each view, one `CREATE OR REPLACE
  VIEW`. Migrations apply frozen copies of these (alembic/README); tests/test_sql_sources.py
  checks the database at head matches them.
- `queries.sql`: the named statements, bound to constants by janus/db/queries.py.

queries.sql uses procrastinate's layout: each statement follows a `-- name --` line, and the
comment lines right below that line describe it (they are not sent to Postgres).
"""

from __future__ import annotations

import re
from importlib import resources
from typing import Literal, LiteralString, cast

QUERIES_FILE = "queries.sql"

# A query's name line, `-- admit_jobs --`; the comment lines right after it are its description.
_NAME_LINE = re.compile(r"^-- ([a-z][a-z0-9_]*) --\n(?:--(?: .*)?\n)*", re.MULTILINE)
_COMMENT_OR_BLANK = re.compile(r"^\s*(--.*)?$")
# What a definition file defines: comment lines, then `CREATE OR REPLACE FUNCTION name(` or
# `CREATE OR REPLACE VIEW name `.
_DEFINITION = re.compile(r"\A(?:--[^\n]*\n|\s)*CREATE OR REPLACE (FUNCTION|VIEW) (\w+)[(\s]")

DefinitionKind = Literal["FUNCTION", "VIEW"]


class SqlFileError(Exception):
    """A SQL file of this package is malformed; the message names the file and the problem."""


def _only_comments(text: str) -> bool:
    return all(_COMMENT_OR_BLANK.match(line) for line in text.splitlines())


def parse_queries(text: str, file_name: str = QUERIES_FILE) -> dict[str, LiteralString]:
    """The statements of a `-- name --` file by name, each stripped of surrounding blank space.

    Raises SqlFileError for SQL before the first name, a name used twice, or a name with no
    statement, so that a slip in the file fails at import rather than at the first call.
    """
    parts = _NAME_LINE.split(text)
    if not _only_comments(parts[0]):
        raise SqlFileError(f"{file_name}: SQL before the first -- name -- line")
    queries: dict[str, LiteralString] = {}
    for name, body in zip(parts[1::2], parts[2::2], strict=True):
        if name in queries:
            raise SqlFileError(f"{file_name}: the query {name!r} is defined twice")
        statement = body.strip()
        if _only_comments(statement):
            raise SqlFileError(f"{file_name}: the query {name!r} has no statement")
        # Our own file, shipped with the code: as trusted as a string literal in it.
        queries[name] = cast(LiteralString, statement)
    return queries


def read_sql_file(file_name: str) -> str:
    """The text of one SQL file of this package (works from a wheel as from a checkout)."""
    return (resources.files(__name__) / file_name).read_text(encoding="utf-8")


def load_queries() -> dict[str, LiteralString]:
    """The named statements of queries.sql."""
    return parse_queries(read_sql_file(QUERIES_FILE))


def defined_object(text: str) -> tuple[DefinitionKind, str] | None:
    """What a definition file's text creates, ("FUNCTION" or "VIEW", its name); None when it
    does not start, after its comments, with CREATE OR REPLACE FUNCTION or VIEW."""
    match = _DEFINITION.match(text)
    if match is None:
        return None
    return cast(DefinitionKind, match.group(1)), match.group(2)


def _definitions(kind: DefinitionKind) -> dict[str, str]:
    """The live definitions of one kind: name -> the text of `<name>.sql`."""
    sources = {}
    for entry in resources.files(__name__).iterdir():
        if not entry.name.endswith(".sql") or entry.name == QUERIES_FILE:
            continue
        text = entry.read_text(encoding="utf-8")
        defined = defined_object(text)
        if defined is None:
            raise SqlFileError(f"{entry.name}: not a CREATE OR REPLACE FUNCTION or VIEW")
        if defined[0] == kind:
            sources[entry.name.removesuffix(".sql")] = text
    return sources


def function_sources() -> dict[str, str]:
    """The live function definitions: function name -> the text of `<name>.sql`."""
    return _definitions("FUNCTION")


def view_sources() -> dict[str, str]:
    """The live view definitions: view name -> the text of `<name>.sql`."""
    return _definitions("VIEW")
