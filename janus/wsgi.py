"""The gunicorn target: one app and one pool per worker process.

gunicorn imports this module in each worker after the fork (gunicorn.conf.py keeps
preload_app off), so the pool opened here belongs to this worker alone.
"""

from __future__ import annotations

from janus import logs
from janus.app import create_app
from janus.db.pool import make_pool
from janus.settings import Settings

settings = Settings.from_env()
logs.configure(settings.log_level)
pool = make_pool(settings)
# Do not wait for the database: while it is down, requests answer 503 and the pool keeps
# trying to connect in the background.
pool.open(wait=False)
app = create_app(settings, pool)
