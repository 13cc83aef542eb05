"""What every part of the bench shares: where things are, its error, its progress lines."""

from __future__ import annotations

import sys
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
RESULTS_DIR = REPO_ROOT / "bench" / "results"
BIN = Path(sys.executable).parent


class BenchError(Exception):
    """The bench could not run; the message says why."""


def say(text: str) -> None:
    """A progress line, on stderr: stdout carries only the report."""
    print(text, file=sys.stderr, flush=True)
