"""Database URLs as libpq reads them, checked without connecting."""

from __future__ import annotations

import psycopg
from psycopg.conninfo import conninfo_to_dict

from janus.settings import SettingsError


def libpq_can_parse(url: str) -> bool:
    """Whether libpq can parse `url`; its error is dropped, since it quotes the password."""
    try:
        conninfo_to_dict(url)
    except psycopg.ProgrammingError:
        return False
    return True


def parsable_database_url(url: str) -> str:
    """`url` as given, or a SettingsError, which does not quote it, if libpq cannot parse it.

    Called wherever Janus connects (the pool, the CLI's connection, the migrations), and by
    gunicorn.conf.py in the master, so that a bad DATABASE_URL stops Janus at start-up with
    one clear line.
    """
    if not libpq_can_parse(url):
        raise SettingsError(
            "DATABASE_URL cannot be parsed (check the percent-encoding of user and password)"
        )
    return url
