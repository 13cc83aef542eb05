"""The twin's gunicorn target: one app and one pool per worker process, as janus/wsgi.py.

gunicorn imports this module in each worker after the fork (preload_app is off, as Janus's),
so the pool opened here belongs to this worker alone. DATABASE_URL is the bench's database;
TWIN_POOL_SIZE is Janus's pool size, set by bench/twin/gunicorn.conf.py.
"""

from __future__ import annotations

import os

from psycopg_pool import ConnectionPool

from bench.twin.app import create_app

POOL_OPEN_TIMEOUT_S = 10.0

pool_size = int(os.environ["TWIN_POOL_SIZE"])
# Autocommit: each statement is its own transaction, with no BEGIN or COMMIT of psycopg's.
# No `check` callback: it would cost a round trip each time a connection is taken.
pool = ConnectionPool(
    os.environ["DATABASE_URL"],
    min_size=pool_size,
    max_size=pool_size,
    open=False,
    kwargs={"autocommit": True, "application_name": "janus-twin"},
    name="twin",
)
pool.open(wait=True, timeout=POOL_OPEN_TIMEOUT_S)
app = create_app(pool)
