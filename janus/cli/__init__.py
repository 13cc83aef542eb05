"""The operator CLI: users, config versions, pause switches and bucket levels, from a shell.

Every command opens its own connection to DATABASE_URL and runs in one transaction. Every
failure is one line on stderr, `janus: error: ...`, with exit status 2 when the command line
or its input is wrong and 1 when the database says no or cannot be reached.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable, Sequence
from typing import TextIO

from janus.admission import NoDecision
from janus.cli.demo import DEMO_CONFIG, DEMO_USER_NAME
from janus.cli.failures import EXIT_FAILED, EXIT_INTERRUPTED, CommandError, failure
from janus.cli.parser import build_parser, with_jobs_action
from janus.settings import SettingsError, database_url_from_env

__all__ = ["DEMO_CONFIG", "DEMO_USER_NAME", "build_parser", "main"]


def main(argv: Sequence[str] | None = None) -> int:
    """Run one command; the process's exit status."""
    try:
        args = build_parser().parse_args(with_jobs_action(sys.argv[1:] if argv is None else argv))
        database_url = database_url_from_env()
        run: Callable[[argparse.Namespace, str, TextIO], None] = args.run
        run(args, database_url, sys.stdout)
    except KeyboardInterrupt:
        return EXIT_INTERRUPTED
    except BrokenPipeError:
        # The reader (`| head`) left; point stdout at /dev/null so the final flush is quiet too.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return EXIT_FAILED
    except (CommandError, SettingsError, NoDecision) as error:
        message, exit_status = failure(error)
        print(f"janus: error: {message}", file=sys.stderr)
        return exit_status
    return 0
