"""docs/api.md's commands that generate a client in another language from GET /openapi.json,
run as written against the real service: openapi-generator installed from PyPI into a
virtualenv of the test's own, the document fetched with curl, a TypeScript client and an
open-objects Go client generated, with no error and no warning but the generator's own.

The generator needs Java 11 or later (this machine's kind has 17); installing it takes a few
seconds (about 5 measured here, cold), generating each client about 3.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

from tests.conftest import REPO_ROOT, StartGunicorn

GUIDE = REPO_ROOT / "docs" / "api.md"
_BLOCK = re.compile(r"<!-- generate: ([a-z]+) -->\n```sh\n(.*?)```", re.S)
BLOCKS = dict(_BLOCK.findall(GUIDE.read_text(encoding="utf-8")))

# What openapi-generator 7.26 says of any OpenAPI 3.1 document, of a model named as a type of
# the language (renamed: `Error` is `ModelError` in TypeScript), and of a schema given as
# `false` or `{}` (`additionalProperties`: its 3.1 parser finds no name for it). Anything else
# it warns of is taken for a defect of the document.
GENERATORS_OWN_WARNINGS = re.compile(
    r"OpenAPI 3\.1 support is still in beta"
    r"|cannot be used as a model name\. Renamed to"
    r"|Failed to get the schema name: null"
)


def run_block(name: str, cwd: Path, janus_url: str) -> str:
    """Run the guide's block `name` in bash, as a reader pastes it; what it printed."""
    done = subprocess.run(
        ["bash", "-euo", "pipefail"],
        input=BLOCKS[name],
        cwd=cwd,
        env={**os.environ, "JANUS_URL": janus_url},
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stdout[-5000:] + done.stderr[-5000:]
    return done.stdout + done.stderr


def generators_complaints(output: str) -> list[str]:
    """The lines where the generator reports an error, or a warning not its own."""
    return [
        line
        for line in output.splitlines()
        if re.search(r"\b(WARN|ERROR)\b", line) and not GENERATORS_OWN_WARNINGS.search(line)
    ]


def test_the_guides_commands_generate_clients_without_complaint(
    start_gunicorn: StartGunicorn, tmp_path: Path
) -> None:
    assert shutil.which("java"), "openapi-generator needs Java 11 or later on PATH"
    server = start_gunicorn(workers=1)

    typescript = run_block("typescript", tmp_path, server.url)
    assert generators_complaints(typescript) == []
    jobs_api = (tmp_path / "janus-ts" / "apis" / "JobsApi.ts").read_text()
    assert "async postDashboardJobs(" in jobs_api

    go = run_block("go", tmp_path, server.url)
    assert generators_complaints(go) == []
    opened = (tmp_path / "janus-openapi-open.json").read_text()
    assert '"additionalProperties": false' not in opened
    # The open client takes an answer with a field a later release added.
    decision = (tmp_path / "janus-go" / "model_decision.go").read_text()
    assert "func (o *Decision) UnmarshalJSON(" in decision
    assert "DisallowUnknownFields" not in decision
