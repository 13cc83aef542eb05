"""The README's quickstart, its commands run as written, in its order, on a fresh database.

`make run` in one process group (shell 1), with DATABASE_URL, a free PORT and one gunicorn
worker; the export lines it printed, then the submit command, in bash (shell 2); then
janus-worker on examples/tasks.py, until the three jobs are completed as the dashboard reads
them (GET /dashboard/jobs, with the printed key), and Ctrl-C (SIGINT) stops it, exit 0.
The blocks are read from the README by their `<!-- quickstart: NAME -->` markers, so the
README and this test cannot say two things.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

import pytest
import requests

from devtools.ports import HOST, free_port
from tests.conftest import REPO_ROOT

README = REPO_ROOT / "README.md"
_BLOCK = re.compile(r"<!-- quickstart: ([a-z]+) -->\n```sh\n(.*?)```", re.S)
BLOCKS = dict(_BLOCK.findall(README.read_text(encoding="utf-8")))
JOBS = 3
START_TIMEOUT_S = 60.0
DRAIN_TIMEOUT_S = 60.0
STOP_TIMEOUT_S = 40.0

pytestmark = pytest.mark.concurrency


@dataclass
class Shell:
    """A command run in a process group of its own, as a shell runs one in the foreground;
    what it prints is kept in memory (never in a file: it prints an API key)."""

    process: subprocess.Popen[str]
    lines: list[str] = field(default_factory=list)

    def read(self) -> None:
        """Keep every line it prints, until it closes its output."""
        assert self.process.stdout is not None
        for line in self.process.stdout:
            self.lines.append(line.rstrip("\n"))

    def output(self) -> str:
        """What it printed so far."""
        return "\n".join(self.lines)

    def signal(self, number: signal.Signals) -> None:
        """Send `number` to its group, as a terminal sends Ctrl-C to the foreground job."""
        if self.process.poll() is None:
            os.killpg(self.process.pid, number)


@contextmanager
def shell(script: str, env: dict[str, str]) -> Iterator[Shell]:
    """`script` run by bash at the repository's root; stopped (SIGTERM, then SIGKILL) at the end
    if it still runs."""
    process = subprocess.Popen(
        ["bash", "-euo", "pipefail", "-c", script],
        cwd=REPO_ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )
    running = Shell(process)
    reader = threading.Thread(target=running.read, daemon=True)
    reader.start()
    try:
        yield running
    finally:
        running.signal(signal.SIGTERM)
        try:
            process.wait(STOP_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            running.signal(signal.SIGKILL)
            process.wait()
        reader.join(5)


def wait_for(condition: Callable[[], bool], what: str, timeout_s: float, watched: Shell) -> None:
    """Poll `condition()` until it is true; fail with `what` and the shell's output if it does
    not come, or the shell's command ends first."""
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert watched.process.poll() is None, f"exited before {what}:\n{watched.output()}"
        assert time.monotonic() < deadline, f"no {what} in {timeout_s} s:\n{watched.output()}"
        time.sleep(0.2)


def serves(url: str) -> bool:
    """Whether the service at `url` answers /health."""
    try:
        return requests.get(f"{url}/health", timeout=1).status_code == 200
    except requests.ConnectionError:
        return False


def test_the_readmes_quickstart_runs_as_written(database_url: str) -> None:
    port = free_port()
    # This process's environment without Janus's own variables: a newcomer's shell.
    base = {name: value for name, value in os.environ.items() if not name.startswith("JANUS_")}
    first = {**base, "DATABASE_URL": database_url, "PORT": str(port), "WEB_CONCURRENCY": "1"}

    with shell(BLOCKS["serve"], first) as serving:
        url = f"http://{HOST}:{port}"
        wait_for(lambda: serves(url), "service answering", START_TIMEOUT_S, serving)
        exports = [line for line in serving.lines if line.startswith("export ")]
        second = "\n".join(exports) + "\n"

        submitted = subprocess.run(
            ["bash", "-euo", "pipefail"],
            input=second + BLOCKS["submit"],
            cwd=REPO_ROOT,
            env=base,
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert submitted.returncode == 0, submitted.stderr
        said = [line.split()[0] for line in submitted.stdout.splitlines()]
        assert said == ["accepted", "accepted", "waiting"], submitted.stdout

        key = next(line.split("=", 1)[1] for line in exports if "JANUS_API_KEY=" in line)

        def completed() -> bool:
            answer = requests.get(
                f"{url}/dashboard/jobs",
                params={"batch_name": "my-batch"},
                headers={"Authorization": f"Bearer {key}"},
                timeout=5,
            )
            answer.raise_for_status()
            states = [job["state"] for job in answer.json()["jobs"]]
            return states == JOBS * ["completed"]

        with shell(second + BLOCKS["work"], base) as working:
            wait_for(completed, "three completed jobs", DRAIN_TIMEOUT_S, working)
            working.signal(signal.SIGINT)  # Ctrl-C
            assert working.process.wait(STOP_TIMEOUT_S) == 0, working.output()
        assert working.output().count("outcome=completed") == JOBS, working.output()
        assert "Traceback" not in working.output()
    assert "Traceback" not in serving.output(), serving.output()
