"""Database URLs as libpq reads them, checked without connecting."""

from __future__ import annotations

import psycopg
from psycopg.conninfo import conninfo_to_dict


def libpq_can_parse(url: str) -> bool:
    """Whether libpq can parse `url`; its error is dropped, since it quotes the password."""
    try:
        conninfo_to_dict(url)
    except psycopg.ProgrammingError:
        return False
    return True
