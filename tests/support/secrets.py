"""No API key's secret in any log of the whole run (issue 25's done-when), checked once every
test has run.

A pytest plugin (tests/conftest.py registers it). Every gunicorn the tests start writes its
log (stderr, and the request log on stdout) under the run's temporary directory; at the end
of the session each of those files is searched for anything shaped as a key's secret (48 hex
digits: janus.keys' layout), whoever made the key, in process or over HTTP. One found fails
the run, naming the file. The secrets a run makes are random, so no log holds one by chance.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from janus.keys import SECRET_BYTES

# Anything shaped as a key's secret.
SECRET = re.compile(rf"(?<![0-9a-f])[0-9a-f]{{{2 * SECRET_BYTES}}}(?![0-9a-f])")


def logs_with_secrets(root: Path) -> list[str]:
    """The log files under `root` that hold something shaped as a key's secret."""
    return sorted(
        str(path)
        for path in root.rglob("*.log")
        if SECRET.search(path.read_text(encoding="utf-8", errors="replace"))
    )


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    """Fail the run when any gunicorn log of it holds a key's secret."""
    factory = getattr(session.config, "_tmp_path_factory", None)
    if factory is None:
        return
    found = logs_with_secrets(factory.getbasetemp())
    if found:
        session.config.get_terminal_writer().line(
            "an API key's secret was written to: " + ", ".join(found), red=True
        )
        session.exitstatus = pytest.ExitCode.TESTS_FAILED
