"""Development tools around Janus, not part of the service and not in its wheel.

localdb: the embedded PostgreSQL of `make run`, the tests and the bench; service: gunicorn
started as the Procfile starts it; ports: a free loopback port. Run from the repository root.
"""
