"""gunicorn settings for the bare twin: Janus's own way of serving, the twin's app.

How requests are served is read from Janus's gunicorn.conf.py (as the environment resolves it:
WEB_CONCURRENCY, JANUS_THREADS, ...), so the twin has the same workers, worker class and
threads even when those change; GUNICORN_CMD_ARGS, applied after this file, changes both
servers alike. What Janus's file leaves to gunicorn's defaults (keepalive, ...) stays at the
defaults here too. bench/twin/server.py starts it with PORT and DATABASE_URL.
"""

import os
import runpy
import sys
from pathlib import Path
from typing import Any

JANUS_CONF = Path(__file__).resolve().parents[2] / "gunicorn.conf.py"
# Runs Janus's file as gunicorn would: it checks Janus's settings, and only defines the rest.
janus = runpy.run_path(str(JANUS_CONF))

wsgi_app = "bench.twin.wsgi:app"
bind = f"127.0.0.1:{os.environ['PORT']}"
workers = janus["workers"]
worker_class = janus["worker_class"]
threads = janus["threads"]
preload_app = janus["preload_app"]
header_map = janus["header_map"]
timeout = janus["timeout"]
graceful_timeout = janus["graceful_timeout"]
# Janus's pool size, for bench/twin/wsgi.py's pool.
raw_env = [f"TWIN_POOL_SIZE={janus['settings'].pool_size}"]
accesslog = None
# Janus's gunicorn runs on the same host at the same time: no control socket to share.
control_socket_disable = True
errorlog = "-"
loglevel = janus["loglevel"]


def worker_exit(server: Any, worker: Any) -> None:
    """Close the worker's pool so its connections end cleanly."""
    wsgi = sys.modules.get("bench.twin.wsgi")
    if wsgi is not None:
        wsgi.pool.close()
