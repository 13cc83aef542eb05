"""Apply the frozen SQL files that live next to the migrations (see alembic/README).

A migration that creates or changes a function applies a copy of the function's file taken
when the migration was written, `alembic/versions/<revision>_<function>.sql`, never the live
`janus/db/sql/<function>.sql`: the live file changes later, and an old migration must keep
installing what it installed when it was written.

Importable as `sqlfiles` because alembic.ini puts this directory on sys.path.
"""

from __future__ import annotations

from pathlib import Path

from alembic import op

VERSIONS_DIR = Path(__file__).resolve().parent / "versions"


def frozen_sql(file_name: str) -> str:
    """The text of `alembic/versions/<file_name>`, a frozen copy of a SQL file."""
    path = VERSIONS_DIR / file_name
    if path.parent != VERSIONS_DIR or path.suffix != ".sql":
        raise ValueError(f"not a SQL file of alembic/versions: {file_name!r}")
    return path.read_text(encoding="utf-8")


def execute_sql_file(file_name: str) -> None:
    """Run `alembic/versions/<file_name>` in the migration's transaction.

    It goes through op.execute, so SQLAlchemy reads `:word` (not `::`) as a bind parameter:
    the files must not contain one, even in a comment.
    """
    op.execute(frozen_sql(file_name))
