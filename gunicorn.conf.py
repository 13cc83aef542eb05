"""gunicorn settings for Janus, read from the environment (Render sets PORT and WEB_CONCURRENCY)."""

import os
import sys

from janus import metrics_files
from janus.db.urls import parsable_database_url
from janus.settings import Settings, SettingsError

# Check the settings in the master, so a bad environment fails once, clearly, at start-up
# (the workers' pools check DATABASE_URL again; libpq's own error would quote the password).
bind_host = os.environ.get("JANUS_BIND_HOST", "0.0.0.0")
try:
    settings = Settings.from_env()
    parsable_database_url(settings.database_url)
    settings.check_exposure(bind_host)
except SettingsError as error:
    sys.exit(f"janus: {error}")

wsgi_app = "janus.wsgi:app"
bind = f"{bind_host}:{os.environ.get('PORT', '8000')}"
# Admission waits on Postgres, not on the CPU, so a few workers per core keep both busy.
workers = int(os.environ.get("WEB_CONCURRENCY", "4"))
# gthread with a read deadline per request (janus/worker.py): a slow or stalled client holds
# one thread for at most JANUS_READ_TIMEOUT_S, never a whole worker.
worker_class = "janus.worker.JanusWorker"
threads = settings.threads
# Each worker imports janus.wsgi after the fork and opens its own connection pool.
preload_app = False
# Drop headers whose spelling is ambiguous once mapped to WSGI (X_User_ID and X-User-ID both
# become HTTP_X_USER_ID): only a real X-User-ID is ever read as the user.
header_map = "drop"
timeout = 30
graceful_timeout = 30
accesslog = None
# No runtime control socket: nothing uses it, and several servers on one host would share its path.
control_socket_disable = True
errorlog = "-"
loglevel = settings.log_level


def worker_exit(server, worker):
    """Close the worker's pool so its connections end cleanly."""
    wsgi = sys.modules.get("janus.wsgi")
    if wsgi is not None:
        wsgi.pool.close()


def on_starting(server):
    """Give the workers an empty metrics directory (janus/metrics_files.py) before they start."""
    server.janus_metrics_dir, server.janus_metrics_dir_made = metrics_files.prepare(os.environ)


def child_exit(server, worker):
    """A worker has gone: its pool no longer counts in the live gauges."""
    metrics_files.mark_worker_dead(worker.pid)


def on_exit(server):
    """Remove the metrics directory if Janus made it (PROMETHEUS_MULTIPROC_DIR was unset)."""
    if server.janus_metrics_dir_made:
        metrics_files.remove(server.janus_metrics_dir)
