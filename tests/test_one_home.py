"""Each fact has one home, and each module a size a reader takes in.

The copies these tests look for are the ones Janus once had: the refill arithmetic written at
every site that refills, the queue's defaults in Python and again in SQL, the seed's example
job in the CLI, the document and the dashboard. Migrations keep frozen copies of old SQL on
purpose (alembic/README), so only janus/ is read.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from tests.conftest import REPO_ROOT

JANUS = REPO_ROOT / "janus"
MAX_MODULE_LINES = 400


def _files(*suffixes: str) -> list[Path]:
    return sorted(
        path
        for path in JANUS.rglob("*")
        if path.suffix in suffixes and "__pycache__" not in path.parts
    )


def _holding(pattern: str, *suffixes: str) -> list[str]:
    """The files of janus/ whose text matches `pattern`, relative to the repository."""
    return [
        str(path.relative_to(REPO_ROOT))
        for path in _files(*suffixes)
        if re.search(pattern, path.read_text(encoding="utf-8"))
    ]


@pytest.mark.parametrize("package", ["janus", "bench", "clients"])
def test_no_module_is_over_400_lines(package: str) -> None:
    long = {
        str(path.relative_to(REPO_ROOT)): lines
        for path in sorted((REPO_ROOT / package).rglob("*.py"))
        if (lines := len(path.read_text(encoding="utf-8").splitlines())) > MAX_MODULE_LINES
    }
    assert long == {}


def test_the_seconds_between_two_moments_are_counted_in_one_function() -> None:
    """Every refill reaches the clock through seconds_elapsed()."""
    assert _holding(r"extract\s*\(\s*epoch", ".sql", ".py") == ["janus/db/sql/seconds_elapsed.sql"]


def test_the_queues_defaults_are_pythons_only() -> None:
    """max_attempts and retention_days default in janus/schemas/requests.py: the SQL takes
    them as arguments and reads the active config, with no number of its own."""
    assert _holding(r"DEFAULT_MAX_ATTEMPTS = ", ".py") == ["janus/schemas/requests.py"]
    assert _holding(r"DEFAULT_RETENTION_DAYS = ", ".py") == ["janus/schemas/requests.py"]
    number_beside = r"(max_attempts|retention_days)\b[^\n]*(DEFAULT\s+\d|,\s*\d+\s*\))"
    assert _holding(number_beside, ".sql") == []


def test_the_seeds_example_job_is_written_once() -> None:
    """The CLI, the OpenAPI examples and the dashboard's form (which reads the document) all
    show janus.openapi.examples.SEED_JOB."""
    assert _holding(r"custom_value", ".py", ".js", ".html", ".sql") == ["janus/openapi/examples.py"]
