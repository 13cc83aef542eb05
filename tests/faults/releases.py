"""Two releases of Janus side by side: the previous one from git history, the current one here.

The deploy scenario runs an earlier commit as it was released: its own tree (`git archive`
into a temporary directory), its own gunicorn.conf.py, its own alembic/ migrations, with this
checkout's .venv. The editable install of this checkout would otherwise shadow the old
`janus` package, so every process of a release runs from its tree with its tree first on
PYTHONPATH (this checkout's too, whichever tree the .venv was installed from);
`Release.check_imported()` then proves the old service loaded its own code.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path

import psycopg

from tests.conftest import REPO_ROOT

# Before this release moved `jobs` to partitions (issue 27): main's head when the deploy
# scenario was written. JANUS_DEPLOY_FROM names another commit, tag or HEAD~N.
DEFAULT_PREVIOUS = "f46012e"
PREVIOUS_VARIABLE = "JANUS_DEPLOY_FROM"
# A full migration from an empty database, or one long migration, may take this long.
MIGRATE_TIMEOUT_S = 600


class ReleaseError(RuntimeError):
    """The previous release cannot be materialised or run."""


@dataclass(frozen=True)
class Release:
    """A tree of Janus: its root, and the commit it was taken from (None: this checkout)."""

    name: str
    root: Path
    commit: str | None = None

    def env(self) -> dict[str, str]:
        """The environment its processes need on top of this one's: its tree imported first.

        Bytecode is written (PYTHONDONTWRITEBYTECODE empty is unset), as check_imported()
        reads it.
        """
        return {"PYTHONPATH": str(self.root), "PYTHONDONTWRITEBYTECODE": ""}

    def run(
        self, args: list[str], database_url: str, log_path: Path, timeout_s: float
    ) -> subprocess.CompletedProcess[str]:
        """Run a program of the .venv (alembic, janus) from this tree; raise on failure."""
        env = {**os.environ, "DATABASE_URL": database_url, **self.env()}
        command = [str(Path(sys.executable).parent / args[0]), *args[1:]]
        done = subprocess.run(
            command,
            cwd=self.root,
            env=env,
            capture_output=True,
            text=True,
            timeout=timeout_s,
            check=False,
        )
        with log_path.open("a", encoding="utf-8") as log:
            log.write(f"$ {' '.join(args)}  # in {self.root}\n{done.stdout}{done.stderr}\n")
        if done.returncode != 0:
            # The end of the output says why: a traceback's last line, the statement.
            why = "\n".join(done.stderr.strip().splitlines()[-3:])
            raise ReleaseError(
                f"{self.name}: {' '.join(args)} exited with status {done.returncode} "
                f"(its output: {log_path}):\n{why}"
            )
        return done

    def migrate(self, database_url: str, log_path: Path) -> float:
        """`alembic upgrade head` of this tree, as the pre-deploy command runs it; its seconds."""
        started = time.monotonic()
        self.run(["alembic", "upgrade", "head"], database_url, log_path, MIGRATE_TIMEOUT_S)
        return time.monotonic() - started

    def check_imported(self) -> None:
        """Raise unless a process of this release compiled its own janus.wsgi: the proof that
        gunicorn served this tree's code, not the editable install's."""
        compiled = list((self.root / "janus" / "__pycache__").glob("wsgi.*.pyc"))
        if self.commit is not None and not compiled:
            raise ReleaseError(
                f"{self.name}: gunicorn did not import {self.root / 'janus' / 'wsgi.py'}; "
                "it would have served this checkout's code instead"
            )


def current() -> Release:
    """This checkout, as it stands (uncommitted changes included)."""
    return Release("current", REPO_ROOT)


def previous_rev(environ: Mapping[str, str] = os.environ) -> str:
    """The revision the scenario deploys from: JANUS_DEPLOY_FROM, else DEFAULT_PREVIOUS."""
    return environ.get(PREVIOUS_VARIABLE) or DEFAULT_PREVIOUS


def _git(*args: str) -> str:
    done = subprocess.run(
        ["git", *args], cwd=REPO_ROOT, capture_output=True, text=True, check=False
    )
    if done.returncode != 0:
        raise ReleaseError(f"git {' '.join(args)}: {done.stderr.strip()}")
    return done.stdout.strip()


def resolve(rev: str) -> str:
    """The full commit id of `rev`, or a ReleaseError that says how to get it."""
    try:
        return _git("rev-parse", "--verify", "--quiet", f"{rev}^{{commit}}")
    except ReleaseError:
        raise ReleaseError(
            f"{PREVIOUS_VARIABLE}={rev!r}: no such commit in {REPO_ROOT}. The deploy scenario "
            "starts the previous release from git history: run it in a full clone (not a "
            f"shallow one), or set {PREVIOUS_VARIABLE} to a commit, tag or HEAD~N that it has."
        ) from None


def differing_requirements(commit: str) -> list[str]:
    """The requirements files that differ between `commit` and this checkout."""
    changed = _git("diff", "--name-only", commit, "--", "requirements.txt", "pyproject.toml")
    return changed.split()


@contextlib.contextmanager
def previous(rev: str) -> Iterator[Release]:
    """The tree of `rev`, extracted from git into a temporary directory for the `with`."""
    commit = resolve(rev)
    root = Path(tempfile.mkdtemp(prefix="janus-previous-"))
    try:
        archive = subprocess.Popen(
            ["git", "archive", "--format=tar", commit], cwd=REPO_ROOT, stdout=subprocess.PIPE
        )
        assert archive.stdout is not None
        subprocess.run(["tar", "-x", "-C", str(root)], stdin=archive.stdout, check=True)
        archive.stdout.close()
        if archive.wait() != 0:
            raise ReleaseError(f"git archive {commit} failed")
        yield Release(f"{rev} ({commit[:10]})", root, commit)
    finally:
        shutil.rmtree(root, ignore_errors=True)


def schema_version(database_url: str) -> str:
    """The alembic revision the database is at."""
    with psycopg.connect(database_url) as db:
        row = db.execute("SELECT version_num FROM alembic_version").fetchone()
    assert row is not None
    return str(row[0])
