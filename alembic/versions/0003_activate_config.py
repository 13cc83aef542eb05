"""activate_config(): store a new config version and make it the active one, buckets included.

Revision ID: 0003
Revises: 0002
"""

from __future__ import annotations

from sqlfiles import execute_sql_file

from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    execute_sql_file("0003_activate_config.sql")


def downgrade() -> None:
    op.execute("DROP FUNCTION activate_config(uuid, boolean, smallint, numeric, text, json)")
